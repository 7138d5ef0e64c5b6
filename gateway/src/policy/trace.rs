//! Trace: what each admission check decided and why, step by step, for
//! `tradehabit-gateway explain` and the policy tests
//! (`docs/configuration.md`, "Explain a decision").
//!
//! The live path passes [`Trace::off`]: every note is then a no-op and its
//! description is never built, so the checks behave (and cost) exactly as
//! without a trace. The dry run passes [`Trace::on`] through the same
//! functions.

use serde::Serialize;

use crate::audit;
use crate::reject::Rejection;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    /// The request passed this check.
    Pass,
    /// This check refused the request: the final answer is its refusal.
    Refuse,
    /// The gateway itself answers here (a preflight, a token endpoint).
    Answer,
    /// The check does not apply to this route or request.
    Skip,
    /// Decided only once the body is read (not evaluated by a dry run).
    Later,
}

impl Outcome {
    /// The word shown in human output.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Refuse => "REFUSE",
            Outcome::Answer => "answer",
            Outcome::Skip => "skip",
            Outcome::Later => "later",
        }
    }
}

/// One check's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Step {
    /// The check (`shape`, `route`, `authenticate`, …).
    pub(crate) check: &'static str,
    /// How it came out.
    pub(crate) outcome: Outcome,
    /// Why, in the operator's words.
    pub(crate) detail: String,
}

/// The steps of one request's admission, when recording.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    steps: Option<Vec<Step>>,
    /// The route that applied (a preflight's included).
    route: Option<String>,
}

impl Trace {
    /// Records nothing (the live path).
    pub(crate) fn off() -> Trace {
        Trace {
            steps: None,
            route: None,
        }
    }

    /// Records every step (the dry run).
    pub(crate) fn on() -> Trace {
        Trace {
            steps: Some(Vec::new()),
            route: None,
        }
    }

    /// Notes a step; `detail` is only called when recording.
    pub(crate) fn note(
        &mut self,
        check: &'static str,
        outcome: Outcome,
        detail: impl FnOnce() -> String,
    ) {
        if let Some(steps) = &mut self.steps {
            steps.push(Step {
                check,
                outcome,
                detail: detail(),
            });
        }
    }

    /// Notes a check's result (passed, with `passed` saying how; or
    /// refused, with the refusal's status and reason) and returns it.
    pub(crate) fn step<T>(
        &mut self,
        check: &'static str,
        result: Result<T, Rejection>,
        passed: impl FnOnce(&T) -> String,
    ) -> Result<T, Rejection> {
        match &result {
            Ok(value) => self.note(check, Outcome::Pass, || passed(value)),
            Err(rejection) => self.note(check, Outcome::Refuse, || refusal(rejection)),
        }
        result
    }

    /// Like [`Trace::step`], for a check whose pass means the gateway
    /// answers the request itself.
    pub(crate) fn note_answer<T>(
        &mut self,
        check: &'static str,
        result: Result<T, Rejection>,
        answered: impl FnOnce() -> String,
    ) -> Result<T, Rejection> {
        match &result {
            Ok(_) => self.note(check, Outcome::Answer, answered),
            Err(rejection) => self.note(check, Outcome::Refuse, || refusal(rejection)),
        }
        result
    }

    /// Notes a check that may answer the request itself (`Some`), refuse
    /// it, or let it pass unremarked (`None`).
    pub(crate) fn answer_if<T>(
        &mut self,
        check: &'static str,
        result: Result<Option<T>, Rejection>,
        answered: impl FnOnce() -> String,
    ) -> Result<Option<T>, Rejection> {
        match &result {
            Ok(Some(_)) => self.note(check, Outcome::Answer, answered),
            Ok(None) => {}
            Err(rejection) => self.note(check, Outcome::Refuse, || refusal(rejection)),
        }
        result
    }

    /// Notes the route that applies.
    pub(crate) fn routed(&mut self, name: &str) {
        if self.steps.is_some() {
            self.route = Some(name.to_owned());
        }
    }

    /// The recorded steps (empty when off) and route.
    pub(crate) fn finish(self) -> (Vec<Step>, Option<String>) {
        (self.steps.unwrap_or_default(), self.route)
    }
}

/// A refusal in the operator's words: status, the audit reason, and the
/// operator-only detail when there is one.
pub(crate) fn refusal(rejection: &Rejection) -> String {
    let decision = audit::decision(rejection);
    let mut text = format!(
        "{} {}",
        rejection.status().as_u16(),
        decision.reason.unwrap_or("refused")
    );
    if let Rejection::Check(check) = rejection {
        if let Some(detail) = &check.audit_detail {
            text.push_str(&format!(" ({detail})"));
        }
    } else {
        text.push_str(&format!(": {rejection}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_records_nothing_and_never_describes() {
        let mut trace = Trace::off();
        trace.note("shape", Outcome::Pass, || unreachable!("not described"));
        let result: Result<u8, Rejection> = trace.step("route", Err(Rejection::NoRoute), |_| {
            unreachable!("not described")
        });
        assert!(result.is_err());
        trace.routed("r");
        assert_eq!(trace.finish(), (Vec::new(), None));
    }

    #[test]
    fn on_records_passes_and_refusals_in_order() {
        let mut trace = Trace::on();
        let host = trace.step("shape", Ok::<_, Rejection>("a.example"), |h| {
            format!("host {h}")
        });
        assert_eq!(host.unwrap(), "a.example");
        let _ = trace.step("route", Err::<(), _>(Rejection::NoRoute), |()| {
            String::new()
        });
        let (steps, _) = trace.finish();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].outcome, Outcome::Pass);
        assert_eq!(steps[0].detail, "host a.example");
        assert_eq!(steps[1].outcome, Outcome::Refuse);
        assert_eq!(steps[1].detail, "404 route.not_found: no route matches");
    }
}
