//! Every worker's metrics in the gateway's one `/metrics` document.
//!
//! Each worker of `upstream.addresses` serves its own OpenMetrics document
//! (`/internal/metrics`). The gateway appends all of them after its own
//! registry, with every sample labelled `worker="<index>"` (its position in
//! `upstream.addresses`, never its socket path or host:
//! `docs/audit-and-metrics.md`, "Metrics"). The workers expose the same
//! families, so each family's metadata (`# HELP`, `# TYPE`, `# UNIT`) is
//! written once, followed by the samples of every worker: a family repeated
//! per worker would be an invalid exposition (Prometheus refuses a second
//! `# TYPE` line for one name).
//!
//! A worker whose document declares a family with another type than an
//! earlier worker's (two builds during a rolling upgrade) has that family
//! left out rather than mixed in; a worker that does not answer is left out
//! entirely and reported by `tradehabit_gateway_worker_scrape_up`.

/// The label added to every worker sample.
const WORKER_LABEL: &str = "worker";

/// One metric family of the merged document, in order of first appearance.
struct Family {
    name: String,
    /// `# TYPE` value of the first document that declared it.
    kind: Option<String>,
    /// Metadata lines of the first document that declared it.
    metadata: Vec<String>,
    samples: Vec<String>,
}

/// One family as parsed from one worker's document.
struct Parsed<'a> {
    name: &'a str,
    kind: Option<&'a str>,
    metadata: Vec<&'a str>,
    samples: Vec<&'a str>,
}

/// Merges the workers' documents, each given with its index in
/// `upstream.addresses`; the result ends with `# EOF`.
pub(super) fn merge<'a>(documents: impl IntoIterator<Item = (usize, &'a str)>) -> String {
    let mut families: Vec<Family> = Vec::new();
    for (worker, document) in documents {
        for parsed in parse(document) {
            let position = families.iter().position(|f| f.name == parsed.name);
            let family = match position {
                Some(i) => &mut families[i],
                None => {
                    families.push(Family {
                        name: parsed.name.to_string(),
                        kind: parsed.kind.map(str::to_string),
                        metadata: parsed.metadata.iter().map(|l| l.to_string()).collect(),
                        samples: Vec::new(),
                    });
                    families.last_mut().expect("just pushed")
                }
            };
            if family.kind.as_deref() != parsed.kind {
                tracing::warn!(
                    upstream.worker = worker,
                    family = parsed.name,
                    "a worker declares a metric family with another type than an earlier worker; left out"
                );
                continue;
            }
            let index = worker.to_string();
            family
                .samples
                .extend(parsed.samples.iter().map(|line| labelled(line, &index)));
        }
    }
    let mut text = String::new();
    for family in families {
        for line in family.metadata.iter().chain(&family.samples) {
            text.push_str(line);
            text.push('\n');
        }
    }
    text.push_str("# EOF\n");
    text
}

/// The families of one OpenMetrics document, in order. Metadata lines
/// name their family; a sample belongs to the family of the metadata
/// before it (or, with none, to a family of its own name).
fn parse(document: &str) -> Vec<Parsed<'_>> {
    let mut families: Vec<Parsed<'_>> = Vec::new();
    for line in document.lines() {
        if line.is_empty() || line == "# EOF" {
            continue;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let mut words = meta.splitn(3, ' ');
            let (Some(keyword), Some(name)) = (words.next(), words.next()) else {
                continue;
            };
            if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
                continue;
            }
            if families
                .last()
                .is_none_or(|f| f.name != name || !f.samples.is_empty())
            {
                families.push(Parsed {
                    name,
                    kind: None,
                    metadata: Vec::new(),
                    samples: Vec::new(),
                });
            }
            let family = families.last_mut().expect("pushed above if missing");
            if keyword == "TYPE" {
                family.kind = words.next().map(str::trim);
            }
            family.metadata.push(line);
        } else if line.starts_with('#') {
            continue;
        } else {
            if families.is_empty() {
                families.push(Parsed {
                    name: sample_name(line),
                    kind: None,
                    metadata: Vec::new(),
                    samples: Vec::new(),
                });
            }
            families
                .last_mut()
                .expect("pushed above if missing")
                .samples
                .push(line);
        }
    }
    families
}

/// The metric name at the start of a sample line.
fn sample_name(line: &str) -> &str {
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    &line[..end]
}

/// `line` with `worker="<index>"` as its first label.
fn labelled(line: &str, index: &str) -> String {
    let name = sample_name(line);
    let rest = &line[name.len()..];
    match rest.strip_prefix('{') {
        Some(labels) if labels.starts_with('}') => {
            format!("{name}{{{WORKER_LABEL}=\"{index}\"{labels}")
        }
        Some(labels) => format!("{name}{{{WORKER_LABEL}=\"{index}\",{labels}"),
        None => format!("{name}{{{WORKER_LABEL}=\"{index}\"}}{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "# HELP w_sessions Sessions.\n# TYPE w_sessions gauge\nw_sessions 3\n\
        # HELP w_requests Requests.\n# TYPE w_requests counter\n\
        w_requests_total{route=\"/a\"} 5\nw_requests_total{} 1 # {trace=\"x\"} 1\n# EOF\n";

    #[test]
    fn every_worker_is_labelled_and_each_family_declared_once() {
        let merged = merge([(0, ONE), (1, ONE)]);
        assert_eq!(
            merged,
            "# HELP w_sessions Sessions.\n# TYPE w_sessions gauge\n\
             w_sessions{worker=\"0\"} 3\nw_sessions{worker=\"1\"} 3\n\
             # HELP w_requests Requests.\n# TYPE w_requests counter\n\
             w_requests_total{worker=\"0\",route=\"/a\"} 5\n\
             w_requests_total{worker=\"0\"} 1 # {trace=\"x\"} 1\n\
             w_requests_total{worker=\"1\",route=\"/a\"} 5\n\
             w_requests_total{worker=\"1\"} 1 # {trace=\"x\"} 1\n# EOF\n"
        );
    }

    #[test]
    fn a_family_of_another_type_is_left_out_and_no_worker_is_an_empty_document() {
        let other = "# TYPE w_sessions counter\nw_sessions_total 1\n# EOF\n";
        let merged = merge([(0, ONE), (2, other)]);
        assert!(!merged.contains("worker=\"2\""), "{merged}");
        assert_eq!(merged.matches("# TYPE w_sessions ").count(), 1);
        assert_eq!(merge([]), "# EOF\n");
    }
}
