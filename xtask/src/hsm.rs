//! `cargo xtask setup`: the source HSMs the tests use, made fresh each time and described in
//! `target/hsm/env.json`:
//! - SoftHSM 2.6.1 (Debian `softhsm2`), a token `byok-src` in `target/hsm/softhsm`;
//! - NSS softokn (Debian `libnss3`), a key database in `target/hsm/nss`, the "NSS Certificate DB" slot;
//! - openCryptoki 3.27 (Debian forky) in a `debootstrap` root cached at `/var/cache/byok/opencryptoki-forky`
//!   (override with `BYOK_OCK_ROOT`), with `pkcsslotd` running and a soft token `byok-ock`.
//!
//! - Kryoptic 1.5 (`tests/kryoptic`, built here), a token `byok-kry` in `target/hsm/kryoptic` (`kryoptic.rs`);
//! - p11-kit's proxy and tool (Debian `p11-kit-modules`, `p11-kit`); the `softhsm2` package registers SoftHSM with it.
//!
//! Also imports the fixture keys the refusal tests need (SoftHSM makes imported keys non-extractable).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::util::{self, apt_install, capture, ensure_openssl, ensure_python, exec, fresh_dir, root, works};

pub(crate) const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub(crate) const NSS_MODULE: &str = "/usr/lib/x86_64-linux-gnu/libsoftokn3.so";
const P11KIT_PROXY: &str = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so";
const OCK_MODULE: &str = "/usr/lib/x86_64-linux-gnu/opencryptoki/libopencryptoki.so.0";
const SOFTHSM_PIN: &str = "1234";
const OCK_SO_PIN: &str = "11223344";
const OCK_PIN: &str = "12345678";

pub(crate) fn env_file() -> PathBuf {
    root().join("target/hsm/env.json")
}

pub(crate) fn setup() -> Result<PathBuf> {
    ensure_openssl()?;
    ensure_python()?;
    let mut missing = Vec::new();
    if !Path::new(SOFTHSM_MODULE).exists() || !works(Command::new("softhsm2-util").arg("--version")) {
        missing.push("softhsm2");
    }
    if !Path::new(NSS_MODULE).exists() {
        missing.push("libnss3");
    }
    if !works(Command::new("certutil").arg("-H")) && !Path::new("/usr/bin/certutil").exists() {
        missing.push("libnss3-tools");
    }
    // p11-kit's proxy (`p11-kit-modules`) and tool: the tests choose SoftHSM by its registered name and through the
    // proxy.
    if !Path::new(P11KIT_PROXY).exists() {
        missing.push("p11-kit-modules");
    }
    if !works(Command::new("p11-kit").arg("list-modules")) {
        missing.push("p11-kit");
    }
    if !Path::new("/usr/sbin/debootstrap").exists() {
        missing.push("debootstrap");
    }
    // The tests watch system calls with it (the record's directory is fsync'ed after the rename).
    if !works(Command::new("strace").arg("-V")) {
        missing.push("strace");
    }
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    let dir = root().join("target/hsm");
    fresh_dir(&dir)?;
    let pin_file = dir.join("pin");
    util::write_secret(&pin_file, SOFTHSM_PIN)?;

    let softhsm = softhsm(&dir)?;
    let nss_init = nss_database(&dir.join("nss"))?;

    let kryoptic = crate::kryoptic::setup(&dir)?;
    let ock = match opencryptoki(&dir) {
        Ok(v) => v,
        Err(e) => bail!("openCryptoki setup failed: {e:#}"),
    };
    let env = json!({
        "softhsm": softhsm,
        "nss": { "module": NSS_MODULE, "init_args": nss_init, "token": "NSS Certificate DB" },
        "opencryptoki": ock,
        "kryoptic": kryoptic,
        "pin_file": pin_file,
    });
    let file = env_file();
    std::fs::write(&file, serde_json::to_vec_pretty(&env)?)?;
    eprintln!("setup: HSM test environment in {}", file.display());
    Ok(file)
}

fn softhsm(dir: &Path) -> Result<serde_json::Value> {
    let sdir = dir.join("softhsm");
    std::fs::create_dir_all(sdir.join("tokens"))?;
    let conf = sdir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            sdir.join("tokens").display()
        ),
    )?;
    let util = || {
        let mut c = Command::new("softhsm2-util");
        c.env("SOFTHSM2_CONF", &conf);
        c
    };
    capture(util().args([
        "--init-token",
        "--free",
        "--label",
        "byok-src",
        "--pin",
        SOFTHSM_PIN,
        "--so-pin",
        "5678",
    ]))?;
    // Keys SoftHSM imports are non-extractable: fixtures for the refusals.
    let keys = root().join("testdata/keys");
    let tmp = sdir.join("import");
    std::fs::create_dir_all(&tmp)?;
    let dsa_params = tmp.join("dsa-params.pem");
    capture(
        Command::new("openssl")
            .args([
                "genpkey",
                "-genparam",
                "-algorithm",
                "DSA",
                "-pkeyopt",
                "dsa_paramgen_bits:2048",
                "-out",
            ])
            .arg(&dsa_params),
    )?;
    capture(
        Command::new("openssl")
            .args(["genpkey", "-paramfile"])
            .arg(&dsa_params)
            .arg("-out")
            .arg(tmp.join("dsa.pem")),
    )?;
    let imports = [
        (keys.join("rsa1024.pkcs8.pem"), "rsa1024", "0a01"),
        (keys.join("ec-brainpoolp256r1.pkcs8.pem"), "brainpool", "0a02"),
        (tmp.join("dsa.pem"), "dsa", "0a03"),
        (keys.join("rsa2048.pkcs8.pem"), "rsa2048-not-extractable", "0a04"),
        // The private half of testdata's RSA-2048 KEK: SoftHSM opens blobs with it (`byok-cli hsm verify`).
        (keys.join("kek-rsa2048.pkcs8.pem"), "kek-verifier", "0b01"),
    ];
    for (file, label, id) in imports {
        capture(util().arg("--import").arg(&file).args([
            "--token",
            "byok-src",
            "--label",
            label,
            "--id",
            id,
            "--pin",
            SOFTHSM_PIN,
        ]))
        .with_context(|| format!("importing {label} into SoftHSM"))?;
    }
    Ok(json!({ "module": SOFTHSM_MODULE, "conf": conf, "token": "byok-src", "pin": SOFTHSM_PIN }))
}

/// The cached forky root with openCryptoki; made by debootstrap when missing (about a minute, ~340 MB).
fn ock_root() -> Result<PathBuf> {
    let root_dir = std::env::var_os("BYOK_OCK_ROOT")
        .map_or_else(|| PathBuf::from("/var/cache/byok/opencryptoki-forky"), PathBuf::from);
    if root_dir.join("usr/sbin/pkcsslotd").exists() {
        return Ok(root_dir);
    }
    let partial = root_dir.with_extension("partial");
    if partial.exists() {
        let _ = Command::new("umount").arg(partial.join("proc")).status();
        std::fs::remove_dir_all(&partial)?;
    }
    std::fs::create_dir_all(partial.parent().context("root has a parent")?)?;
    eprintln!("setup: building the openCryptoki root with debootstrap (once per machine)");
    // Debian 12's debootstrap has no script named forky; sid's is the same.
    exec(
        Command::new("debootstrap")
            .args(["--variant=minbase", "--include=opencryptoki", "forky"])
            .arg(&partial)
            .args(["http://deb.debian.org/debian", "/usr/share/debootstrap/scripts/sid"]),
    )?;
    std::fs::rename(&partial, &root_dir)?;
    Ok(root_dir)
}

fn mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/mounts")
        .map(|m| m.lines().any(|l| l.split(' ').nth(1) == Some(&*path.to_string_lossy())))
        .unwrap_or(false)
}

fn chroot(root_dir: &Path, script: &str) -> Result<Vec<u8>> {
    capture(Command::new("chroot").arg(root_dir).args(["sh", "-c", script]))
}

fn opencryptoki(dir: &Path) -> Result<serde_json::Value> {
    let r = ock_root()?;
    for (what, target, fstype) in [("proc", r.join("proc"), "proc"), ("tmpfs", r.join("dev/shm"), "tmpfs")] {
        if !mounted(&target) {
            std::fs::create_dir_all(&target)?;
            exec(Command::new("mount").args(["-t", fstype, what]).arg(&target))?;
        }
    }
    std::fs::write(
        r.join("etc/opencryptoki/opencryptoki.conf"),
        "version opencryptoki-3.27\n\nslot 3\n{\n    stdll = libpkcs11_sw.so\n    tokversion = 3.12\n}\n",
    )?;
    // A fresh token every time: stop the slot daemon, wipe the token store, start again.
    let _ = Command::new("pkill").args(["-x", "pkcsslotd"]).status();
    std::thread::sleep(std::time::Duration::from_millis(300));
    chroot(
        &r,
        "rm -rf /var/lib/opencryptoki/swtok /run/opencryptoki && \
         mkdir -p /run/opencryptoki /var/lib/opencryptoki/swtok/TOK_OBJ && \
         chown -R root:pkcs11 /run/opencryptoki /var/lib/opencryptoki/swtok && chown root:pkcs11 /var/lib/opencryptoki && \
         chmod 770 /run/opencryptoki /var/lib/opencryptoki/swtok /var/lib/opencryptoki/swtok/TOK_OBJ && pkcsslotd",
    )?;
    chroot(
        &r,
        &format!(
            "echo byok-ock | pkcsconf -c 3 -I -S 87654321 && pkcsconf -c 3 -P -S 87654321 -n {OCK_SO_PIN} && \
             pkcsconf -c 3 -u -S {OCK_SO_PIN} -n {OCK_PIN}"
        ),
    )?;
    let work = r.join("work");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(r.join("opt/byok"))?;
    std::fs::create_dir_all(&work)?;
    util::write_secret(&work.join("pin"), OCK_PIN)?;
    let _ = dir;
    Ok(json!({ "root": r, "module": OCK_MODULE, "token": "byok-ock", "pin_file_in_root": "/work/pin", "work": work }))
}

/// A new, empty NSS softokn database (no password) in `dir`; returns the library parameters (`C_Initialize`'s
/// `pReserved`, `--pkcs11-init-args`) that open it.
pub(crate) fn nss_database(dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir)?;
    capture(
        Command::new("certutil")
            .arg("-N")
            .arg("-d")
            .arg(format!("sql:{}", dir.display()))
            .arg("--empty-password"),
    )?;
    Ok(format!(
        "configdir='sql:{}' certPrefix='' keyPrefix='' secmod='secmod.db' flags=",
        dir.display()
    ))
}
