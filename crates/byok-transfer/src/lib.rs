#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod attest;
pub mod batch;
mod blob;
mod error;
pub mod fan_out;
pub mod files;
mod import;
pub mod inspect;
pub mod inventory;
mod kek;
mod keyfile;
pub mod locks;
mod observe;
mod period;
mod plan;
mod provenance;
mod record;
mod request;
pub mod rotate;
mod runtime;
pub mod state;
mod transfer;
mod verify;

pub use blob::{Blob, HsmBlob, wrap_in_hsm, wrap_in_software};
pub use error::{Error, Kind, Result, Step};
pub use import::{BlobImported, check_blob_kek, import_blob};
pub use kek::{KekChoice, KekPolicy, obtain as obtain_kek};
pub use keyfile::{kek_kid, read_kek, read_target};
pub use observe::{Event, Observer, Quiet, STEPS};
pub use period::Period;
pub use plan::Plan;
pub use provenance::{Provenance, kind_tag};
pub use record::{
    BlobRecord, FORMAT_VERSION, ImportRecord, KekRecord, KeyRecord, SelfTestRecord, SourceRecord, TokenRecord, Tool,
    TransferRecord, VaultRecord, VerificationRecord, WrapRecord,
};
pub use request::{KeyProperties, transfer_id};
pub use transfer::{Pipeline, Prepared, Transferred, adopt, compare_existing, complete, prepare, transferable};
pub use verify::{Expectation, Verification, verify};
