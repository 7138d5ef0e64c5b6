use super::*;
use crate::checks::Problems;
use governor::clock::FakeRelativeClock;

fn quotas(per_ip: &[&str], per_principal: &[&str]) -> RouteRateLimits {
    let raw = RouteRateLimitsRaw {
        per_ip: per_ip.iter().map(|s| (*s).to_owned()).collect(),
        per_principal: per_principal.iter().map(|s| (*s).to_owned()).collect(),
        on_store_error: None,
    };
    let mut problems = Problems::new();
    let limits = validate_route(&raw, "routes[0].rate_limit", &mut problems);
    assert!(problems.is_empty(), "{problems}");
    limits.unwrap()
}

fn limiters(
    per_ip: &[&str],
    per_principal: &[&str],
    max_keys: usize,
) -> (RouteLimiters<FakeRelativeClock>, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    let settings = RateLimitSettings {
        max_tracked_keys: max_keys,
        ..RateLimitSettings::default()
    };
    (
        RouteLimiters::new(&quotas(per_ip, per_principal), &settings, clock.clone()),
        clock,
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn quota_syntax_is_strict() {
    assert_eq!(
        "5/minute".parse::<QuotaSpec>().unwrap().to_string(),
        "5/minute"
    );
    assert_eq!("200/day".parse::<QuotaSpec>().unwrap().window, Window::Day);
    assert_eq!("10/second".parse::<QuotaSpec>().unwrap().count.get(), 10);
    for bad in [
        "5/minutes",
        "5 /minute",
        "5/Minute",
        "-5/minute",
        "+5/minute",
        "five/minute",
        "5",
        "/minute",
        "5/min",
        "1.5/hour",
    ] {
        assert_eq!(
            bad.parse::<QuotaSpec>(),
            Err(QuotaError::Malformed),
            "{bad}"
        );
    }
    assert_eq!(
        "0/minute".parse::<QuotaSpec>(),
        Err(QuotaError::CountOutOfRange)
    );
    assert_eq!(
        "1000001/day".parse::<QuotaSpec>(),
        Err(QuotaError::CountOutOfRange)
    );
    assert_eq!(
        "99999999999/day".parse::<QuotaSpec>(),
        Err(QuotaError::CountOutOfRange)
    );
}

#[test]
fn route_problems_have_paths() {
    let raw = RouteRateLimitsRaw {
        per_ip: vec!["5/minute".into(), "10/minute".into(), "x".into()],
        per_principal: vec!["0/day".into()],
        on_store_error: None,
    };
    let mut problems = Problems::new();
    assert!(validate_route(&raw, "routes[3].rate_limit", &mut problems).is_none());
    assert!(problems.has("routes[3].rate_limit.per_ip[1]"));
    assert!(problems.has("routes[3].rate_limit.per_ip[2]"));
    assert!(problems.has("routes[3].rate_limit.per_principal[0]"));
    assert_eq!(problems.len(), 3);

    let mut problems = Problems::new();
    let raw = RateLimitSettingsRaw {
        max_tracked_keys: Some(0),
        purge_interval_seconds: Some(0),
        ..RateLimitSettingsRaw::default()
    };
    let no_durations: super::store_settings::ParseDuration = |_| Err("unused".into());
    assert!(validate_settings(&raw, "rate_limit", no_durations, &mut problems).is_none());
    assert_eq!(problems.len(), 2);
}

#[test]
fn limit_hit_gives_retry_after_and_recovers_on_the_fake_clock() {
    let (limits, clock) = limiters(&["5/minute"], &[], 100);
    let client = ip("203.0.113.1");
    for expected_remaining in (0..5).rev() {
        let usages = limits.check_ip(client).unwrap();
        assert_eq!(usages[0].remaining, expected_remaining);
    }
    let limited = limits.check_ip(client).unwrap_err();
    // One cell every 12 s.
    assert_eq!(limited.retry_after_seconds, 12);
    assert!(!limited.overflow);
    let rejection = Rejection::from(limited);
    assert_eq!(rejection.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(rejection.reason, "rate_limit.exceeded");
    let header = |name: &HeaderName| {
        rejection
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header(&RETRY_AFTER).as_deref(), Some("12"));
    assert_eq!(
        header(&RATELIMIT_POLICY).as_deref(),
        Some("\"ip-minute\";q=5;w=60")
    );
    assert_eq!(
        header(&RATELIMIT).as_deref(),
        Some("\"ip-minute\";r=0;t=12")
    );

    clock.advance(Duration::from_secs(11));
    let limited = limits.check_ip(client).unwrap_err();
    assert_eq!(limited.retry_after_seconds, 1);
    clock.advance(Duration::from_secs(1));
    assert_eq!(limits.check_ip(client).unwrap()[0].remaining, 0);
}

#[test]
fn retry_after_rounds_up() {
    let (limits, clock) = limiters(&["3/second"], &[], 100);
    let client = ip("203.0.113.1");
    for _ in 0..3 {
        limits.check_ip(client).unwrap();
    }
    clock.advance(Duration::from_millis(100));
    // 333 ms period, 100 ms elapsed: 233 ms left → 1 s.
    assert_eq!(limits.check_ip(client).unwrap_err().retry_after_seconds, 1);
}

#[test]
fn several_windows_are_all_enforced() {
    let (limits, clock) = limiters(&[], &["2/minute", "3/day"], 100);
    assert_eq!(limits.check_principal("key:ci").unwrap().len(), 2);
    limits.check_principal("key:ci").unwrap();
    let limited = limits.check_principal("key:ci").unwrap_err();
    assert_eq!(limited.usage.name, "principal-minute");
    clock.advance(Duration::from_secs(60));
    let usages = limits.check_principal("key:ci").unwrap();
    assert_eq!(usages[1].remaining, 0);
    let limited = limits.check_principal("key:ci").unwrap_err();
    assert_eq!(limited.usage.name, "principal-day");
    // The day quota replenishes one cell every 8 hours.
    assert!(
        limited.retry_after_seconds > 7 * 3600,
        "{}",
        limited.retry_after_seconds
    );
    assert_eq!(limited.others.len(), 1);
}

#[test]
fn a_request_refused_by_one_quota_spends_none_of_its_stage() {
    // The day quota is listed first: before, each refusal by the minute
    // quota still used a cell of the day.
    let (limits, clock) = limiters(&["10/day", "1/minute"], &[], 100);
    let client = ip("203.0.113.9");
    let usages = limits.check_ip(client).unwrap();
    assert_eq!((usages[0].remaining, usages[1].remaining), (9, 0));
    for _ in 0..5 {
        let limited = limits.check_ip(client).unwrap_err();
        assert_eq!(limited.usage.name, "ip-minute");
        assert_eq!(limited.others[0].name, "ip-day");
        assert_eq!(limited.others[0].remaining, 9, "nothing spent");
    }
    clock.advance(Duration::from_secs(60));
    let usages = limits.check_ip(client).unwrap();
    assert_eq!((usages[0].remaining, usages[1].remaining), (8, 0));
}

#[test]
fn retry_after_is_the_longest_wait_of_the_refusing_quotas() {
    let (limits, _clock) = limiters(&[], &["1/minute", "1/day"], 100);
    limits.check_principal("key:ci").unwrap();
    let limited = limits.check_principal("key:ci").unwrap_err();
    assert_eq!(limited.usage.name, "principal-day");
    assert_eq!(limited.retry_after_seconds, 86_400);
    assert_eq!(limited.others.len(), 1);
    assert_eq!(limited.others[0].name, "principal-minute");
}

#[test]
fn the_ip_stage_is_spent_even_when_the_principal_stage_refuses() {
    // The per-IP stage runs before authentication and counts every
    // request that passes it, whatever happens later.
    let (limits, _clock) = limiters(&["3/minute"], &["1/minute"], 100);
    let client = ip("198.51.100.7");
    limits.check_ip(client).unwrap();
    limits.check_principal("key:ci").unwrap();
    assert_eq!(limits.check_ip(client).unwrap()[0].remaining, 1);
    assert!(limits.check_principal("key:ci").is_err());
    assert_eq!(limits.check_ip(client).unwrap()[0].remaining, 0);
}

#[test]
fn looks_never_create_state_for_unknown_keys() {
    let (limits, _clock) = limiters(&["1/minute", "1/hour"], &[], 100);
    limits.check_ip(ip("192.0.2.1")).unwrap();
    assert_eq!(limits.tracked_keys(), 2);
    assert!(limits.check_ip(ip("192.0.2.1")).is_err());
    assert_eq!(limits.tracked_keys(), 2);
}

#[test]
fn principals_are_independent() {
    let (limits, _clock) = limiters(&[], &["2/minute"], 100);
    limits.check_principal("jwt:idp|alice").unwrap();
    limits.check_principal("jwt:idp|alice").unwrap();
    assert!(limits.check_principal("jwt:idp|alice").is_err());
    assert!(limits.check_principal("jwt:idp|bob").is_ok());
    assert!(limits
        .check_principal(&anonymous_key(ip("198.51.100.1")))
        .is_ok());
}

#[test]
fn mask_keeps_the_prefix() {
    assert_eq!(mask(ip("2001:db8:1:2:3:4:5:6"), 64), ip("2001:db8:1:2::"));
    assert_eq!(mask(ip("192.168.7.9"), 24), ip("192.168.7.0"));
    assert_eq!(mask(ip("192.168.7.9"), 0), ip("0.0.0.0"));
    assert_eq!(mask(ip("192.168.7.9"), 32), ip("192.168.7.9"));
}

#[test]
fn ipv6_clients_are_grouped_by_their_64() {
    let (limits, _clock) = limiters(&["1/minute"], &[], 100);
    limits.check_ip(ip("2001:db8:1:2::1")).unwrap();
    assert!(limits.check_ip(ip("2001:db8:1:2:ffff::9")).is_err());
    assert!(limits.check_ip(ip("2001:db8:1:3::1")).is_ok());
    assert_eq!(anonymous_key(ip("2001:db8:1:2::1")), "ip:2001:db8:1:2::");
    assert_eq!(rate_key_for_ip(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
}

#[test]
fn a_flood_of_distinct_addresses_leaves_tracked_keys_bounded() {
    let (limits, clock) = limiters(&["5/minute"], &["5/minute"], 1_000);
    // A client seen before the flood keeps its own budget.
    let regular = ip("192.0.2.77");
    limits.check_ip(regular).unwrap();

    let mut refused = 0;
    for i in 0..10_000u32 {
        let addr = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        if limits.check_ip(addr).is_err() {
            refused += 1;
        }
        let _ = limits.check_principal(&anonymous_key(addr));
    }
    // Each of the two limiters: at most 1,000 keys plus the overflow slot.
    assert!(
        limits.tracked_keys() <= 2 * 1_001,
        "{}",
        limits.tracked_keys()
    );
    // Untracked newcomers shared one 5/minute bucket.
    assert!(refused >= 10_000 - 1_000 - 5, "{refused}");
    assert!(limits.overflow_decisions() >= 2 * (10_000 - 1_000));
    let limited = limits.check_ip(ip("10.200.0.1")).unwrap_err();
    assert!(limited.overflow);
    assert_eq!(Rejection::from(limited).reason, "rate_limit.overflow");
    assert_eq!(limits.check_ip(regular).unwrap()[0].remaining, 3);

    // Once idle for a full window (governor keeps one replenish
    // interval of margin), every key is purged.
    clock.advance(Duration::from_secs(73));
    limits.retain_recent();
    assert_eq!(limits.tracked_keys(), 0);
    assert!(limits.check_ip(ip("10.200.0.1")).is_ok());
}

#[test]
fn purge_keeps_active_keys() {
    let (limits, clock) = limiters(&["5/minute"], &[], 100);
    limits.check_ip(ip("192.0.2.1")).unwrap();
    clock.advance(Duration::from_secs(30));
    for _ in 0..4 {
        limits.check_ip(ip("192.0.2.2")).unwrap();
    }
    clock.advance(Duration::from_secs(1));
    limits.retain_recent();
    // 192.0.2.1 replenished its single cell after 12 s; .2 is still busy.
    assert_eq!(limits.tracked_keys(), 1);
    assert_eq!(limits.check_ip(ip("192.0.2.2")).unwrap()[0].remaining, 0);
}

#[test]
fn usage_headers_list_every_policy() {
    let (limits, _clock) = limiters(&["10/second"], &["100/hour"], 100);
    let mut usages = limits.check_ip(ip("192.0.2.1")).unwrap();
    usages.extend(limits.check_principal("key:ci").unwrap());
    let headers = headers(&usages);
    assert_eq!(headers[0].0, RATELIMIT_POLICY);
    assert_eq!(
        headers[0].1,
        "\"ip-second\";q=10;w=1, \"principal-hour\";q=100;w=3600"
    );
    assert_eq!(
        headers[1].1,
        "\"ip-second\";r=9;t=1, \"principal-hour\";r=99;t=36"
    );
    // What is left changes with every answer: HTTP/2 never indexes it;
    // the policy recurs and may be.
    assert!(headers[1].1.is_sensitive());
    assert!(!headers[0].1.is_sensitive());
    assert!(super::headers(&[]).is_empty());
}

#[test]
fn empty_route_allows_everything() {
    let (limits, _clock) = limiters(&[], &[], 100);
    assert!(limits.is_empty());
    for _ in 0..100 {
        assert!(limits.check_ip(ip("192.0.2.1")).unwrap().is_empty());
    }
}
