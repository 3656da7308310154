//! The filter of the operators' generation list and of their bulk actions, one contract for
//! both: the list reads it from the query string, a bulk action from its JSON body. Every value
//! is bounded; time ranges are RFC 3339, at most `MAX_RANGE_DAYS` long, and the creation time
//! defaults to the last `DEFAULT_RANGE_HOURS` when no range (and no `q`) is given, so that no
//! request reads the whole table by accident.
use atelier_actors::workflow::WorkflowState;
use atelier_actors::workflow::read::WorkflowFilter;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::error::ApiError;
use crate::api::query::Params;

pub const DEFAULT_RANGE_HOURS: i64 = 24;
pub const MAX_RANGE_DAYS: i64 = 31;
/// Longest text a filter field takes.
const MAX_TEXT: usize = 255;

/// The filter as sent: text, checked by `resolve`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// States, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = "^(reserved|submitted|awaiting_callback|uploading|settled|released)(,(reserved|submitted|awaiting_callback|uploading|settled|released))*$"
    )]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255)]
    pub provider: Option<String>,
    /// An account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = Uuid)]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255)]
    pub error_code: Option<String>,
    /// RFC 3339; a range is at most 31 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub created_from: Option<String>,
    /// RFC 3339; a range is at most 31 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub created_to: Option<String>,
    /// RFC 3339; a range is at most 31 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub updated_from: Option<String>,
    /// RFC 3339; a range is at most 31 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub updated_to: Option<String>,
    /// A generation id or a provider task id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255)]
    pub q: Option<String>,
}

/// The query parameters a filter is read from.
pub const FILTER_PARAMS: [&str; 9] = [
    "state",
    "provider",
    "account",
    "error_code",
    "created_from",
    "created_to",
    "updated_from",
    "updated_to",
    "q",
];

impl FilterSpec {
    /// The filter's parameters in `params`, as text.
    pub fn from_params(params: &Params) -> Result<Self, ApiError> {
        let raw =
            |name: &str| params.parsed(name, "invalid_filter", "", |raw| Some(raw.to_owned()));
        Ok(Self {
            state: raw("state")?,
            provider: raw("provider")?,
            account: raw("account")?,
            error_code: raw("error_code")?,
            created_from: raw("created_from")?,
            created_to: raw("created_to")?,
            updated_from: raw("updated_from")?,
            updated_to: raw("updated_to")?,
            q: raw("q")?,
        })
    }

    /// The filter, checked, its time ranges resolved against `now`.
    pub fn resolve(&self, now: DateTime<Utc>) -> Result<WorkflowFilter, ApiError> {
        let created = range(
            ("created_from", &self.created_from),
            ("created_to", &self.created_to),
            now,
        )?;
        let updated = range(
            ("updated_from", &self.updated_from),
            ("updated_to", &self.updated_to),
            now,
        )?;
        let lookup = text("q", &self.q)?;
        let created = match (created, updated, &lookup) {
            (None, None, None) => Some((now - Duration::hours(DEFAULT_RANGE_HOURS), now)),
            (created, _, _) => created,
        };
        Ok(WorkflowFilter {
            states: states(&self.state)?,
            provider: text("provider", &self.provider)?,
            account_id: account(&self.account)?,
            error_code: text("error_code", &self.error_code)?,
            created,
            updated,
            lookup,
        })
    }

    /// `filter` written back as a spec whose ranges are absolute: resolving it again at any
    /// later time gives the same filter (what a bulk job keeps and the audit log records).
    pub fn absolute(filter: &WorkflowFilter) -> Self {
        let time = |at: DateTime<Utc>| Some(at.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        let states: Vec<&str> = filter.states.iter().map(|state| state.as_str()).collect();
        Self {
            state: (!states.is_empty()).then(|| states.join(",")),
            provider: filter.provider.clone(),
            account: filter.account_id.map(|id| id.to_string()),
            error_code: filter.error_code.clone(),
            created_from: filter.created.and_then(|(from, _)| time(from)),
            created_to: filter.created.and_then(|(_, to)| time(to)),
            updated_from: filter.updated.and_then(|(from, _)| time(from)),
            updated_to: filter.updated.and_then(|(_, to)| time(to)),
            q: filter.lookup.clone(),
        }
    }
}

fn text(name: &str, value: &Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        None => Ok(None),
        Some(value) if !value.is_empty() && value.len() <= MAX_TEXT => Ok(Some(value.clone())),
        Some(_) => Err(ApiError::invalid(
            "invalid_filter",
            format!("{name}: 1 to {MAX_TEXT} bytes"),
        )),
    }
}

fn states(value: &Option<String>) -> Result<Vec<WorkflowState>, ApiError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let mut states = Vec::new();
    for name in value.split(',') {
        let state = WorkflowState::parse(name.trim()).ok_or_else(|| {
            let all: Vec<&str> = WorkflowState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::invalid(
                "invalid_state",
                format!("state: a comma-separated list of {}", all.join(", ")),
            )
        })?;
        if !states.contains(&state) {
            states.push(state);
        }
    }
    Ok(states)
}

fn account(value: &Option<String>) -> Result<Option<Uuid>, ApiError> {
    value
        .as_deref()
        .map(|raw| {
            Uuid::parse_str(raw)
                .map_err(|_| ApiError::invalid("invalid_account", "account: an account id"))
        })
        .transpose()
}

fn time(name: &str, value: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .as_deref()
        .map(|raw| {
            DateTime::parse_from_rfc3339(raw)
                .map(|at| at.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::invalid(
                        "invalid_time",
                        format!("{name}: an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"),
                    )
                })
        })
        .transpose()
}

/// A time range, both ends included.
type Range = (DateTime<Utc>, DateTime<Utc>);

/// `[from, to]` when either is given: `to` defaults to `now`, `from` to `DEFAULT_RANGE_HOURS`
/// before `to`.
fn range(
    (from_name, from): (&str, &Option<String>),
    (to_name, to): (&str, &Option<String>),
    now: DateTime<Utc>,
) -> Result<Option<Range>, ApiError> {
    let (from, to) = (time(from_name, from)?, time(to_name, to)?);
    if from.is_none() && to.is_none() {
        return Ok(None);
    }
    let to = to.unwrap_or(now);
    let from = from.unwrap_or(to - Duration::hours(DEFAULT_RANGE_HOURS));
    if from > to {
        return Err(ApiError::invalid(
            "invalid_range",
            format!("{from_name} is after {to_name}"),
        ));
    }
    if to - from > Duration::days(MAX_RANGE_DAYS) {
        return Err(ApiError::invalid(
            "invalid_range",
            format!("{from_name} to {to_name}: at most {MAX_RANGE_DAYS} days"),
        ));
    }
    Ok(Some((from, to)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_last_day_by_default_and_ranges_bounded() {
        let filter = FilterSpec::default().resolve(now()).unwrap();
        assert_eq!(filter.created, Some((now() - Duration::hours(24), now())));
        let by_id = FilterSpec {
            q: Some("task-1".into()),
            ..FilterSpec::default()
        };
        assert_eq!(by_id.resolve(now()).unwrap().created, None);
        let long = FilterSpec {
            created_from: Some("2026-10-01T00:00:00Z".into()),
            ..FilterSpec::default()
        };
        assert_eq!(long.resolve(now()).unwrap_err().code, "invalid_range");
        let reversed = FilterSpec {
            updated_from: Some("2026-12-01T11:00:00Z".into()),
            updated_to: Some("2026-12-01T10:00:00Z".into()),
            ..FilterSpec::default()
        };
        assert_eq!(reversed.resolve(now()).unwrap_err().code, "invalid_range");
        let bad = FilterSpec {
            state: Some("reserved,lost".into()),
            ..FilterSpec::default()
        };
        assert_eq!(bad.resolve(now()).unwrap_err().code, "invalid_state");
    }

    #[test]
    fn an_absolute_spec_resolves_to_the_same_filter_later() {
        let spec = FilterSpec {
            state: Some("reserved,submitted".into()),
            provider: Some("simulator".into()),
            ..FilterSpec::default()
        };
        let filter = spec.resolve(now()).unwrap();
        let later = now() + Duration::hours(5);
        assert_eq!(
            FilterSpec::absolute(&filter).resolve(later).unwrap(),
            filter
        );
    }
}
