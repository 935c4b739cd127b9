//! When a task is due: a cron expression read in a time zone ([`Schedule`]), and what the
//! scheduler does about a task at a given moment ([`decide`]). Pure: no clock, no I/O, so every
//! rule (daylight-saving changes, catch-up, the overlap skip) is tested by giving it times.
//!
//! Cron follows the Open Cron Pattern Specification as the `croner` crate reads it: five fields
//! (minute, hour, day of month, month, day of week), or six with a leading seconds field;
//! `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`. A local time skipped by a
//! daylight-saving change runs at the first moment after the gap; a local time that happens
//! twice runs once, for fixed-time expressions (`30 2 * * *`), while interval expressions
//! (`0 * * * *`) keep their real-time rhythm through the repeated hour.

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use tether_wire::tasks::{CatchUp, Task, Trigger};

/// A parsed cron expression in its time zone.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    /// Reads `expression` in time zone `timezone` (an IANA name: `UTC`, `Europe/Berlin`).
    /// Errors are sentences for the admin.
    pub(crate) fn parse(expression: &str, timezone: &str) -> Result<Self, String> {
        let tz: Tz = timezone.parse().map_err(|_| {
            format!(
                "unknown time zone {timezone:?}: use an IANA name such as \"UTC\" or \"Europe/Berlin\""
            )
        })?;
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(expression).map_err(|e| {
            format!(
                "invalid cron expression {expression:?}: {e} (five fields \"minute hour day-of-month month day-of-week\", an optional leading seconds field, or @hourly, @daily, @weekly, @monthly, @yearly)"
            )
        })?;
        let schedule = Schedule { cron, tz };
        // An expression that never matches (30 February) is as wrong as one that does not parse.
        if schedule.next_after(0).is_none() {
            return Err(format!("cron expression {expression:?} never comes due"));
        }
        Ok(schedule)
    }

    /// The first due time strictly after `after_ms`, unix ms; none if there is none (within
    /// the years croner searches).
    pub(crate) fn next_after(&self, after_ms: i64) -> Option<i64> {
        let start = Utc
            .timestamp_millis_opt(after_ms)
            .single()?
            .with_timezone(&self.tz);
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        Some(next.timestamp_millis())
    }

    /// The next `count` due times after `after_ms`.
    pub(crate) fn upcoming(&self, after_ms: i64, count: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(count);
        let mut at = after_ms;
        while out.len() < count {
            match self.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }
}

/// What to do about a task that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Start a run.
    Run(Trigger),
    /// Record a skipped run: the one before is still going.
    Skip,
    /// Nothing (a missed run, with catch-up off): only move the due time on.
    Pass,
}

/// The scheduler's verdict on `task` at `now_ms`: `None` when it is not due (disabled, or its
/// time has not come); otherwise what to do and its next due time, which is the first after
/// `now_ms` however many were passed (never a burst). `starting`: the first look after core
/// started, when a due time in the past was missed while core was down.
pub(crate) fn decide(
    task: &Task,
    schedule: &Schedule,
    now_ms: i64,
    starting: bool,
    running: bool,
) -> Option<(Action, Option<i64>)> {
    if !task.spec.enabled {
        return None;
    }
    let due = task.next_run_ms?;
    if due > now_ms {
        return None;
    }
    let next = schedule.next_after(now_ms);
    let action = if starting {
        match task.spec.catch_up {
            CatchUp::One if running => Action::Skip,
            CatchUp::One => Action::Run(Trigger::CatchUp),
            CatchUp::None => Action::Pass,
        }
    } else if running {
        Action::Skip
    } else {
        Action::Run(Trigger::Schedule)
    };
    Some((action, next))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use tether_wire::tasks::{TaskCommand, TaskSpec, TaskTargets};

    fn at(tz: &str, y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        let tz: Tz = tz.parse().unwrap();
        tz.with_ymd_and_hms(y, mo, d, h, mi, s)
            .earliest()
            .unwrap()
            .timestamp_millis()
    }

    fn utc(ms: i64) -> String {
        Utc.timestamp_millis_opt(ms)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    }

    /// A task on every node running `/bin/true` (also the scheduler's tests').
    pub(crate) fn task(
        cron: &str,
        timezone: &str,
        next_run_ms: Option<i64>,
        catch_up: CatchUp,
    ) -> Task {
        Task {
            id: 1,
            spec: TaskSpec {
                name: "t".into(),
                description: String::new(),
                cron: cron.into(),
                timezone: timezone.into(),
                targets: TaskTargets {
                    all: true,
                    ..Default::default()
                },
                command: TaskCommand::Command(vec!["/bin/true".into()]),
                timeout_ms: 1000,
                retries: 0,
                retry_interval_ms: 0,
                spread_ms: 0,
                catch_up,
                enabled: true,
            },
            created_by: "alice".into(),
            created_at_ms: 0,
            updated_by: "alice".into(),
            updated_at_ms: 0,
            next_run_ms,
            last_run: 0,
        }
    }

    /// Drives [`decide`] as the scheduler does, from `from` to `to` in steps of `step_ms`
    /// (a clock that moves only when told): the times runs start, in UTC.
    fn simulate(task: &mut Task, from: i64, to: i64, step_ms: i64) -> Vec<String> {
        let schedule = Schedule::parse(&task.spec.cron, &task.spec.timezone).unwrap();
        task.next_run_ms = schedule.next_after(from);
        let mut runs = Vec::new();
        let mut now = from;
        while now <= to {
            if let Some((action, next)) = decide(task, &schedule, now, false, false) {
                assert_eq!(action, Action::Run(Trigger::Schedule));
                runs.push(utc(now));
                task.next_run_ms = next;
            }
            now += step_ms;
        }
        runs
    }

    #[test]
    fn fixed_times_across_the_spring_change_run_once_after_the_gap() {
        // Europe/Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
        let mut t = task("30 2 * * *", "Europe/Berlin", None, CatchUp::One);
        let from = at("Europe/Berlin", 2026, 3, 27, 12, 0, 0);
        let to = at("Europe/Berlin", 2026, 3, 31, 12, 0, 0);
        let runs = simulate(&mut t, from, to, 60_000);
        assert_eq!(
            runs,
            [
                "2026-03-28 01:30:00", // 02:30 CET
                "2026-03-29 01:00:00", // the gap: 03:00 CEST, the first moment after it
                "2026-03-30 00:30:00", // 02:30 CEST
                "2026-03-31 00:30:00",
            ]
        );
    }

    #[test]
    fn fixed_times_across_the_autumn_change_run_once() {
        // Europe/Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        let mut t = task("30 2 * * *", "Europe/Berlin", None, CatchUp::One);
        let from = at("Europe/Berlin", 2026, 10, 24, 12, 0, 0);
        let to = at("Europe/Berlin", 2026, 10, 26, 12, 0, 0);
        let runs = simulate(&mut t, from, to, 60_000);
        assert_eq!(
            runs,
            [
                "2026-10-25 00:30:00", // 02:30 CEST, the first of the two
                "2026-10-26 01:30:00", // 02:30 CET
            ]
        );
    }

    #[test]
    fn hourly_runs_keep_real_hours_across_both_changes() {
        let mut t = task("@hourly", "America/New_York", None, CatchUp::One);
        // 8 March 2026, 02:00 EST becomes 03:00 EDT: one real hour from 01:00 to 03:00.
        let from = at("America/New_York", 2026, 3, 8, 0, 30, 0);
        let to = at("America/New_York", 2026, 3, 8, 4, 30, 0);
        assert_eq!(
            simulate(&mut t, from, to, 60_000),
            [
                "2026-03-08 06:00:00",
                "2026-03-08 07:00:00",
                "2026-03-08 08:00:00",
            ]
        );
        // 1 November 2026, 02:00 EDT becomes 01:00 EST: 01:00 happens twice, both run.
        let from = at("America/New_York", 2026, 11, 1, 0, 30, 0);
        let to = at("America/New_York", 2026, 11, 1, 2, 30, 0);
        assert_eq!(
            simulate(&mut t, from, to, 60_000),
            [
                "2026-11-01 05:00:00",
                "2026-11-01 06:00:00",
                "2026-11-01 07:00:00",
            ]
        );
    }

    #[test]
    fn a_leading_seconds_field_and_names_are_read() {
        let every_20s = Schedule::parse("*/20 * * * * *", "UTC").unwrap();
        assert_eq!(every_20s.upcoming(0, 3), [20_000, 40_000, 60_000]);
        let daily = Schedule::parse("@daily", "UTC").unwrap();
        assert_eq!(daily.next_after(0), Some(86_400_000));
        let weekday = Schedule::parse("0 9 * * MON-FRI", "UTC").unwrap();
        // 1 January 1970 was a Thursday.
        assert_eq!(weekday.upcoming(0, 2), [9 * 3_600_000, 33 * 3_600_000]);
    }

    #[test]
    fn bad_expressions_and_zones_are_clear_errors() {
        for (cron, tz, says) in [
            ("61 * * * *", "UTC", "invalid cron expression"),
            ("* * *", "UTC", "five fields"),
            ("@sometimes", "UTC", "invalid cron expression"),
            ("* * * * * * *", "UTC", "invalid cron expression"),
            ("", "UTC", "invalid cron expression"),
            ("0 0 30 2 *", "UTC", "never comes due"),
            ("* * * * *", "Mars/Olympus", "unknown time zone"),
            ("* * * * *", "", "unknown time zone"),
        ] {
            let why = Schedule::parse(cron, tz).unwrap_err();
            assert!(why.contains(says), "{cron:?} {tz:?}: {why}");
        }
    }

    #[test]
    fn a_run_still_going_makes_the_next_one_skip() {
        let schedule = Schedule::parse("* * * * *", "UTC").unwrap();
        let t = task("* * * * *", "UTC", Some(60_000), CatchUp::One);
        assert_eq!(
            decide(&t, &schedule, 60_000, false, true),
            Some((Action::Skip, Some(120_000)))
        );
        assert_eq!(decide(&t, &schedule, 59_999, false, true), None);
    }

    #[test]
    fn missed_runs_make_one_catch_up_run_or_none() {
        let schedule = Schedule::parse("* * * * *", "UTC").unwrap();
        // Due at minute 1; core comes back at minute 10 and 30 s: nine were missed.
        let t = task("* * * * *", "UTC", Some(60_000), CatchUp::One);
        let now = 630_000;
        assert_eq!(
            decide(&t, &schedule, now, true, false),
            Some((Action::Run(Trigger::CatchUp), Some(660_000)))
        );
        let off = task("* * * * *", "UTC", Some(60_000), CatchUp::None);
        assert_eq!(
            decide(&off, &schedule, now, true, false),
            Some((Action::Pass, Some(660_000)))
        );
        // Past due while running normally (core was busy): one run, never a burst.
        assert_eq!(
            decide(&t, &schedule, now, false, false),
            Some((Action::Run(Trigger::Schedule), Some(660_000)))
        );
    }

    #[test]
    fn disabled_or_unscheduled_tasks_are_never_due() {
        let schedule = Schedule::parse("* * * * *", "UTC").unwrap();
        let mut t = task("* * * * *", "UTC", Some(60_000), CatchUp::One);
        t.spec.enabled = false;
        assert_eq!(decide(&t, &schedule, 600_000, false, false), None);
        let unscheduled = task("* * * * *", "UTC", None, CatchUp::One);
        assert_eq!(decide(&unscheduled, &schedule, 600_000, false, false), None);
    }
}
