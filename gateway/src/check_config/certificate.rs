//! The certificate and key as `run` loads them, checked without serving:
//! both files exist, the certificate file holds a certificate, the key
//! belongs to it, it covers the names served, and how long it stays valid.

use std::path::Path;

use time::OffsetDateTime;

use crate::cert_dates::not_after;
use crate::config::Config;
use crate::tls::{self, CertError};

/// A certificate that expires within this many days is warned about.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// What the certificate check found: problems (`run` would refuse to
/// start) and warnings.
#[derive(Debug, Default)]
pub struct Findings {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Checks `[tls]` of a valid policy at `now`.
pub fn check(config: &Config, now: OffsetDateTime) -> Findings {
    let mut found = Findings::default();
    let (cert, key) = (config.tls.cert.as_path(), config.tls.key.as_path());
    let generated = config.tls.self_signed_if_missing && !cert.exists() && !key.exists();
    if generated {
        // `run` writes a self-signed pair first: check its names.
        if let Err(error) = tls::check_certificate(config) {
            found.problems.push(describe(&error));
        }
        found.warnings.push(format!(
            "tls: neither {} nor {} exists; `run` will write a SELF-SIGNED development certificate",
            shown(cert),
            shown(key)
        ));
        return found;
    }
    for (name, path) in [("tls.cert", cert), ("tls.key", key)] {
        if !path.exists() {
            found
                .problems
                .push(format!("{name}: {} does not exist", shown(path)));
        }
    }
    if !found.problems.is_empty() {
        return found;
    }
    let certified = match tls::load_pair(cert, key) {
        Ok(certified) => certified,
        Err(error) => {
            found.problems.push(describe(&error));
            return found;
        }
    };
    let mut adopted = config.clone();
    if let Err(error) = tls::adopt(&mut adopted, &certified) {
        found.problems.push(describe(&error));
    }
    if let Some(leaf) = certified.cert.first() {
        expiry(leaf, cert, now, &mut found);
    }
    found
}

fn expiry(
    leaf: &rustls::pki_types::CertificateDer<'_>,
    path: &Path,
    now: OffsetDateTime,
    found: &mut Findings,
) {
    let Some(not_after) = not_after(leaf) else {
        found.warnings.push(format!(
            "tls.cert: cannot read the expiry date of {}",
            shown(path)
        ));
        return;
    };
    let days = (not_after - now).whole_days();
    let date = not_after.date();
    if not_after <= now {
        found.warnings.push(format!(
            "tls.cert: the certificate EXPIRED on {date}: clients will refuse it"
        ));
    } else if days < EXPIRY_WARNING_DAYS {
        found.warnings.push(format!(
            "tls.cert: the certificate expires on {date}, in {days} day(s)"
        ));
    }
}

/// An error as one line, the file shown by its full path.
fn describe(error: &CertError) -> String {
    match error {
        CertError::NoCertificate(path) => format!(
            "tls.cert: {} holds no PEM certificate (a key is not a certificate)",
            shown(path)
        ),
        CertError::NoKey(path) => format!("tls.key: {} holds no PEM private key", shown(path)),
        other => format!("tls: {other}"),
    }
}

fn shown(path: &Path) -> String {
    crate::checks::problems::shown_path(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::{Date, Month, PrimitiveDateTime, Time};

    fn policy_with_certificate(dir: &std::path::Path) -> Config {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 9);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        let text = crate::config::tests::MINIMAL
            .replace(
                "cert = \"cert.pem\"",
                &format!("cert = {:?}", dir.join("cert.pem")),
            )
            .replace(
                "key = \"key.pem\"",
                &format!("key = {:?}", dir.join("key.pem")),
            );
        Config::from_toml(&text).unwrap()
    }

    #[test]
    fn a_certificate_close_to_expiry_or_expired_is_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let config = policy_with_certificate(dir.path());
        let at = |y, m, d| {
            PrimitiveDateTime::new(Date::from_calendar_date(y, m, d).unwrap(), Time::MIDNIGHT)
                .assume_utc()
        };
        let found = check(&config, at(2031, Month::January, 1));
        assert!(
            found.problems.is_empty() && found.warnings.is_empty(),
            "{found:?}"
        );
        let found = check(&config, at(2031, Month::June, 30));
        assert!(found.problems.is_empty(), "{found:?}");
        assert_eq!(
            found.warnings,
            ["tls.cert: the certificate expires on 2031-07-09, in 9 day(s)"]
        );
        let found = check(&config, at(2031, Month::August, 1));
        assert!(
            found.warnings[0].contains("EXPIRED on 2031-07-09"),
            "{found:?}"
        );
    }
}
