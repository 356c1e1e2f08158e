//! The import (`PUT /keys/{name}`), and what byok does when the connection breaks after it was sent: it looks
//! whether the vault carried it out before it sends it again, so that nothing is imported twice.

use azure_core::http::RequestContent;
use azure_security_keyvault_keys::models::ImportKeyParameters;

use crate::convert::{short, vault_key};
use crate::retry::Failure;
use crate::{Cause, Connection, Error, ImportRequest, Imported, TRANSFER_TAG};

impl Connection {
    /// Imports a `.byok` blob (`PUT /keys/{name}`). Throttling (429, 503) is waited out. When the connection breaks
    /// after the request was sent, the key is read back first: if its latest version carries this transfer's
    /// [`TRANSFER_TAG`] the import happened and is not repeated; otherwise it is sent again.
    pub async fn import_key(&self, request: &ImportRequest) -> Result<Imported, Error> {
        request.validate(&self.vault)?;
        const OP: &str = "importing key";
        let name = request.name.as_str();
        let client = &self.client;
        let mut ambiguous = 0;
        loop {
            let sent = self
                .send_create(OP, name, || async move {
                    let content: RequestContent<ImportKeyParameters> = request.to_parameters().try_into()?;
                    client.import_key(name, content, None).await?.into_model()
                })
                .await;
            let e = match sent {
                Ok(key) => {
                    return Ok(Imported {
                        key: vault_key(name, key)?,
                        ambiguous,
                    });
                }
                Err((Failure::Ambiguous, e)) if ambiguous < self.retry.max_retries => e,
                Err((_, e)) => return Err(self.service(OP, name, &e)),
            };
            let wait = self.retry.delay(ambiguous, None);
            ambiguous += 1;
            self.notify(&format!(
                "{OP} `{name}`: {}; the vault may have imported it. Looking in {:.1} s before sending again",
                short(&e),
                wait.as_secs_f64()
            ));
            tokio::time::sleep(wait).await;
            match self.get_key(name, None).await {
                Ok(key) if key.tags.get(TRANSFER_TAG) == Some(&request.transfer_id) => {
                    self.notify(&format!(
                        "{OP} `{name}`: it was imported ({}); not sending again",
                        key.kid
                    ));
                    return Ok(Imported { key, ambiguous });
                }
                Ok(_) => self.notify(&format!("{OP} `{name}`: it was not imported; sending again")),
                Err(e) if e.is_not_found() => self.notify(&format!("{OP} `{name}`: no such key yet; sending again")),
                Err(e) => {
                    return Err(Error::Service {
                        operation: OP,
                        vault: self.vault.url().to_owned(),
                        key: name.to_owned(),
                        cause: Cause::Ambiguous,
                        message: format!(
                            "the connection broke after the import was sent, and whether it happened cannot be \
                             told ({e}); look for a version tagged {TRANSFER_TAG}={} before importing again",
                            request.transfer_id
                        ),
                    });
                }
            }
        }
    }
}
