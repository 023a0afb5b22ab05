//! Every reason the code can write has an entry on the troubleshooting page:
//! the Ready reasons of an OAuthClient and of a connection, and every Event
//! reason. The lists come from the enums, so a reason added to the code
//! fails here until it is documented.

use std::collections::BTreeMap;

use collibra_oauth_operator::{
    connection::status::ConnectionReason,
    controller::reasons::{EventReason, Reason},
};
use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use strum::VariantArray;

use super::root;

const PAGE: &str = "docs/src/troubleshooting.md";
const OAUTHCLIENT_SECTION: &str = "Reasons of an OAuthClient's Ready condition";
const CONNECTION_SECTION: &str = "Reasons of a connection's Ready condition";
const EVENT_SECTION: &str = "Events";
/// Every Event reason that is not a Ready reason. `EventReason` holds data
/// (`Condition(Reason)`), so it cannot list itself; the match below does not
/// compile when a variant is added, which sends the author here.
fn event_reasons() -> Vec<EventReason> {
    fn listed(e: EventReason) -> bool {
        match e {
            EventReason::Condition(_) => false,
            EventReason::Registered
            | EventReason::Recreated
            | EventReason::Rotated
            | EventReason::Replaced
            | EventReason::Adopted
            | EventReason::GrantTypesUpdated
            | EventReason::SecretReshaped
            | EventReason::SecretTypeChanged
            | EventReason::GrantTypesDrift
            | EventReason::RedirectUrisUpdated
            | EventReason::RedirectUrisDrift
            | EventReason::RotationUnsupported
            | EventReason::Orphaned
            | EventReason::ClientAlreadyGone
            | EventReason::ClientNotDeleted
            | EventReason::Deleted
            | EventReason::DeleteUnsupported
            | EventReason::CleanupAbandoned => true,
        }
    }
    let all = vec![
        EventReason::Registered,
        EventReason::Recreated,
        EventReason::Rotated,
        EventReason::Replaced,
        EventReason::Adopted,
        EventReason::GrantTypesUpdated,
        EventReason::SecretReshaped,
        EventReason::SecretTypeChanged,
        EventReason::GrantTypesDrift,
        EventReason::RedirectUrisUpdated,
        EventReason::RedirectUrisDrift,
        EventReason::RotationUnsupported,
        EventReason::Orphaned,
        EventReason::ClientAlreadyGone,
        EventReason::ClientNotDeleted,
        EventReason::Deleted,
        EventReason::DeleteUnsupported,
        EventReason::CleanupAbandoned,
    ];
    assert!(all.iter().all(|e| listed(*e)));
    all
}

/// The page's entries: section (level-2 heading) -> entry name (the first
/// code span of a level-3 heading) -> the entry's text.
fn entries() -> BTreeMap<String, BTreeMap<String, String>> {
    let text = std::fs::read_to_string(root().join(PAGE))
        .unwrap_or_else(|e| panic!("reading {PAGE}: {e}"));
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    let mut entry: Option<String> = None;
    let mut heading: Option<(HeadingLevel, String, Option<String>)> = None;
    for event in Parser::new(&text) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                heading = Some((level, String::new(), None));
            }
            Event::End(TagEnd::Heading(_)) => {
                let Some((level, title, code)) = heading.take() else {
                    continue;
                };
                match level {
                    HeadingLevel::H2 => {
                        section = title;
                        entry = None;
                    }
                    HeadingLevel::H3 => {
                        entry = code;
                        if let Some(name) = &entry {
                            out.entry(section.clone())
                                .or_default()
                                .insert(name.clone(), String::new());
                        }
                    }
                    _ => {}
                }
            }
            Event::Code(t) => match heading.as_mut() {
                Some((_, title, code)) => {
                    title.push_str(&t);
                    code.get_or_insert_with(|| t.to_string());
                }
                None => push(&mut out, &section, &entry, &t),
            },
            Event::Text(t) => match heading.as_mut() {
                Some((_, title, _)) => title.push_str(&t),
                None => push(&mut out, &section, &entry, &t),
            },
            Event::SoftBreak | Event::HardBreak => push(&mut out, &section, &entry, " "),
            _ => {}
        }
    }
    out
}

fn push(
    out: &mut BTreeMap<String, BTreeMap<String, String>>,
    section: &str,
    entry: &Option<String>,
    text: &str,
) {
    if let Some(name) = entry
        && let Some(body) = out.get_mut(section).and_then(|s| s.get_mut(name))
    {
        body.push_str(text);
    }
}

/// Checks one entry: it exists, says what the reason means and, unless it
/// is the Ready state itself, whether it clears by itself and which of
/// Reconciling or Stalled it sets.
fn check_reason(
    missing: &mut Vec<String>,
    section: Option<&BTreeMap<String, String>>,
    section_name: &str,
    reason: &str,
    ready: bool,
    stalled: bool,
    reconciling: bool,
) {
    let Some(body) = section.and_then(|s| s.get(reason)) else {
        missing.push(format!("{section_name}: no entry ### `{reason}`"));
        return;
    };
    if !body.contains("Means:") {
        missing.push(format!(
            "{section_name}: `{reason}` does not say what it means (**Means**:)"
        ));
    }
    if ready {
        return;
    }
    if !body.contains("Clears by itself:") {
        missing.push(format!(
            "{section_name}: `{reason}` does not say whether it clears by itself"
        ));
    }
    if stalled && !body.contains("Stalled=True") {
        missing.push(format!(
            "{section_name}: `{reason}` sets Stalled=True but does not say so"
        ));
    }
    if reconciling && !body.contains("Reconciling=True") {
        missing.push(format!(
            "{section_name}: `{reason}` sets Reconciling=True but does not say so"
        ));
    }
}

#[test]
fn every_reason_and_event_has_an_entry() {
    let page = entries();
    let mut missing = Vec::new();

    let section = page.get(OAUTHCLIENT_SECTION);
    for r in Reason::VARIANTS {
        check_reason(
            &mut missing,
            section,
            OAUTHCLIENT_SECTION,
            r.as_str(),
            *r == Reason::Registered,
            r.is_stalled(),
            r.is_reconciling(),
        );
    }

    let section = page.get(CONNECTION_SECTION);
    for r in ConnectionReason::ALL {
        check_reason(
            &mut missing,
            section,
            CONNECTION_SECTION,
            r.as_str(),
            r.is_ready(),
            r.is_stalled(),
            r.is_reconciling(),
        );
    }

    let section = page.get(EVENT_SECTION);
    for e in event_reasons() {
        let name = e.as_str();
        match section.and_then(|s| s.get(name)) {
            Some(body) if !body.trim().is_empty() => {}
            _ => missing.push(format!(
                "{EVENT_SECTION}: no entry ### `{name}` with a text"
            )),
        }
    }

    assert!(
        missing.is_empty(),
        "{PAGE} lacks {} entries:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn entries_of_reasons_the_code_does_not_have_are_removed() {
    let page = entries();
    let known = |section: &str| -> Vec<String> {
        match section {
            OAUTHCLIENT_SECTION => Reason::VARIANTS
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            CONNECTION_SECTION => ConnectionReason::ALL
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            _ => event_reasons()
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect(),
        }
    };
    let mut stale = Vec::new();
    for section in [OAUTHCLIENT_SECTION, CONNECTION_SECTION, EVENT_SECTION] {
        let known = known(section);
        for name in page.get(section).into_iter().flat_map(|s| s.keys()) {
            if !known.contains(name) {
                stale.push(format!("{section}: `{name}`"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{PAGE} documents reasons the code does not have:\n{}",
        stale.join("\n")
    );
}
