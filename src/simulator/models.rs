//! JSON bodies in the shape of Appwrite 1.9.6 response models (User, Session, error).

use serde_json::{json, Value};

use super::state::{SessionRecord, UserRecord};

/// Server version reported in every error body.
pub(crate) const APPWRITE_VERSION: &str = "1.9.6";

/// Appwrite's default session length (one year).
const SESSION_LIFETIME_MS: i64 = 365 * 24 * 60 * 60 * 1000;

/// A made-up argon2id hash, in the format Appwrite stores for email/password users.
const FAKE_PASSWORD_HASH: &str =
    "$argon2id$v=19$m=7168,t=5,p=1$c2ltdWxhdG9yc2FsdA$c2ltdWxhdGVkLWhhc2gtbm90LWEtcmVhbC1vbmU";

/// Formats Unix milliseconds the way Appwrite writes datetimes: `2026-05-20T10:15:30.512+00:00`.
pub(crate) fn format_datetime(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);

    let hours = ms_of_day / 3_600_000;
    let minutes = ms_of_day / 60_000 % 60;
    let seconds = ms_of_day / 1000 % 60;
    let millis = ms_of_day % 1000;
    format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{millis:03}+00:00")
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day).
/// This is Howard Hinnant's `civil_from_days` algorithm, which works in 400-year eras.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Builds an Appwrite error body: `{"message","code","type","version"}`.
pub(crate) fn error_body(status: u16, error_type: &str, message: &str) -> Value {
    json!({
        "message": message,
        "code": status,
        "type": error_type,
        "version": APPWRITE_VERSION,
    })
}

/// Builds the Session model as an API-key caller sees it, so `current` is false and `secret`
/// carries the stored value.
pub(crate) fn session_json(session: &SessionRecord, user: &UserRecord) -> Value {
    let created = format_datetime(session.created_ms);
    let expire = format_datetime(session.created_ms.saturating_add(SESSION_LIFETIME_MS));
    json!({
        "$id": session.id,
        "$createdAt": created,
        "$updatedAt": created,
        "userId": session.user_id,
        "expire": expire,
        "provider": "email",
        "providerUid": user.email,
        "providerAccessToken": "",
        "providerAccessTokenExpiry": "",
        "providerRefreshToken": "",
        "ip": "203.0.113.24",
        "osCode": "LIN",
        "osName": "GNU/Linux",
        "osVersion": "",
        "clientType": "browser",
        "clientCode": "FF",
        "clientName": "Firefox",
        "clientVersion": "128.0",
        "clientEngine": "Gecko",
        "clientEngineVersion": "128.0",
        "deviceName": "desktop",
        "deviceBrand": "",
        "deviceModel": "",
        "countryCode": "--",
        "countryName": "Unknown",
        "current": false,
        "factors": ["password"],
        "secret": session.secret,
        "mfaUpdatedAt": "",
    })
}

/// Builds the full User model that the Users API returns, including the sensitive `password`,
/// `hash` and `hashOptions` fields.
pub(crate) fn user_json(user: &UserRecord) -> Value {
    let created = format_datetime(user.created_ms);
    let updated = format_datetime(user.updated_ms);
    let email_lower = user.email.to_lowercase();
    json!({
        "$id": user.id,
        "$createdAt": created,
        "$updatedAt": updated,
        "name": "",
        "password": FAKE_PASSWORD_HASH,
        "hash": "argon2",
        "hashOptions": {"type": "argon2", "memoryCost": 7168, "timeCost": 5, "threads": 1},
        "registration": created,
        "status": user.status,
        "labels": [],
        "passwordUpdate": created,
        "email": user.email,
        "phone": "",
        "emailVerification": false,
        "emailCanonical": email_lower,
        "emailIsFree": false,
        "emailIsDisposable": false,
        "emailIsCorporate": false,
        "emailIsCanonical": email_lower == user.email,
        "phoneVerification": false,
        "mfa": false,
        "prefs": {},
        "targets": [{
            "$id": format!("{}-email", user.id),
            "$createdAt": created,
            "$updatedAt": created,
            "name": "",
            "userId": user.id,
            "providerId": null,
            "providerType": "email",
            "identifier": user.email,
            "expired": false,
        }],
        "accessedAt": updated,
        "impersonator": false,
        "impersonatorUserId": null,
    })
}

#[cfg(test)]
mod tests {
    use super::format_datetime;

    #[test]
    fn datetime_epoch_and_known_instant() {
        assert_eq!(format_datetime(0), "1970-01-01T00:00:00.000+00:00");
        // 2026-05-20T10:15:30.512Z
        assert_eq!(
            format_datetime(1_779_272_130_512),
            "2026-05-20T10:15:30.512+00:00"
        );
        // 2024-02-29T23:59:59.999Z, a leap day
        assert_eq!(
            format_datetime(1_709_251_199_999),
            "2024-02-29T23:59:59.999+00:00"
        );
    }
}
