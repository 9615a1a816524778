//! Translations: English and Italian, with Fluent.
//!
//! The `.ftl` files under `i18n/<lang>/` are embedded in the binary and parsed
//! once. A message missing at run time renders as `[id]` and is logged once;
//! mistakes in the files themselves are caught by the unit tests below.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use serde::{Deserialize, Serialize};
use unic_langid::LanguageIdentifier;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    En,
    It,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::It];

    pub fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::It => "it",
        }
    }

    /// The language's name in itself, for a language picker.
    pub fn label(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::It => "Italiano",
        }
    }

    /// Exactly "en" or "it", as stored on orders and in cookies.
    pub fn parse(s: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Embeds one `.ftl` file of every language, in the order of `Lang::ALL`.
macro_rules! ftl {
    ($name:literal) => {
        (
            $name,
            [
                include_str!(concat!("../i18n/en/", $name, ".ftl")),
                include_str!(concat!("../i18n/it/", $name, ".ftl")),
            ],
        )
    };
}

/// Every translation file; adding one is one line here.
const FILES: &[(&str, [&str; 2])] = &[ftl!("emails"), ftl!("console"), ftl!("ca")];

type Bundle = FluentBundle<FluentResource>;

fn bundle(lang: Lang) -> Bundle {
    let id: LanguageIdentifier = lang.as_str().parse().expect("static language tag");
    let mut bundle = Bundle::new_concurrent(vec![id]);
    // Isolation marks (U+2068/U+2069) would show up as junk in emails and HTML.
    bundle.set_use_isolating(false);
    for (_, sources) in FILES {
        // Errors are the tests' business: keep whatever parsed rather than
        // fail in production.
        let resource = FluentResource::try_new(sources[lang.index()].to_string())
            .unwrap_or_else(|(partial, _)| partial);
        let _ = bundle.add_resource(resource);
    }
    bundle
}

static BUNDLES: LazyLock<Vec<Bundle>> =
    LazyLock::new(|| Lang::ALL.into_iter().map(bundle).collect());

/// Problems already logged, so a page rendered a thousand times logs once.
static WARNED: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

fn warn_once(lang: Lang, id: &str, problem: &str) {
    let key = format!("{}:{id}:{problem}", lang.as_str());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.insert(key) {
        tracing::warn!(lang = lang.as_str(), id, "translation: {problem}");
    }
}

fn format(lang: Lang, id: &str, args: Option<&FluentArgs>) -> String {
    let bundle = &BUNDLES[lang.index()];
    let Some(pattern) = bundle.get_message(id).and_then(|m| m.value()) else {
        warn_once(lang, id, "missing message");
        return format!("[{id}]");
    };
    let mut errors = Vec::new();
    let text = bundle
        .format_pattern(pattern, args, &mut errors)
        .into_owned();
    if let Some(e) = errors.first() {
        warn_once(lang, id, &e.to_string());
    }
    text
}

fn fluent_args<'a>(args: &[(&'a str, &'a str)]) -> FluentArgs<'a> {
    let mut fa = FluentArgs::with_capacity(args.len() + 1);
    for (name, value) in args {
        fa.set(*name, *value);
    }
    fa
}

/// Best language for an Accept-Language header value (q-values honoured;
/// "it-IT" → It; unknown → En).
pub fn negotiate(accept_language: &str) -> Lang {
    let mut best: Option<(f32, Lang)> = None;
    for item in accept_language.split(',') {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let primary = tag.split(['-', '_']).next().unwrap_or("");
        let Some(lang) = Lang::parse(&primary.to_ascii_lowercase()) else {
            continue;
        };
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        // q=0 means "not this one"; on a tie the first listed wins.
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, lang));
        }
    }
    best.map(|(_, l)| l).unwrap_or_default()
}

/// A message without arguments. Missing message: `[id]`, logged once.
pub fn t(lang: Lang, id: &str) -> String {
    format(lang, id, None)
}

/// A message with string arguments, as (name, value) pairs.
pub fn t_args(lang: Lang, id: &str, args: &[(&str, &str)]) -> String {
    format(lang, id, Some(&fluent_args(args)))
}

/// A message with a number `$count` (for plurals) and string arguments.
pub fn t_count(lang: Lang, id: &str, count: i64, args: &[(&str, &str)]) -> String {
    let mut fa = fluent_args(args);
    fa.set("count", FluentValue::from(count));
    format(lang, id, Some(&fa))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use fluent_syntax::ast::Entry;

    use super::*;

    /// Message ids, `-term` ids and `id.attribute` names of one file.
    fn ids(source: &str) -> BTreeSet<String> {
        let resource = FluentResource::try_new(source.to_string()).expect("parsed above");
        let mut ids = BTreeSet::new();
        for entry in resource.entries() {
            let (id, attributes) = match entry {
                Entry::Message(m) => (m.id.name.to_string(), &m.attributes),
                Entry::Term(t) => (format!("-{}", t.id.name), &t.attributes),
                _ => continue,
            };
            for a in attributes {
                ids.insert(format!("{id}.{}", a.id.name));
            }
            ids.insert(id);
        }
        ids
    }

    #[test]
    fn files_parse_and_load_cleanly() {
        for lang in Lang::ALL {
            let id: LanguageIdentifier = lang.as_str().parse().unwrap();
            let mut bundle = Bundle::new_concurrent(vec![id]);
            for (name, sources) in FILES {
                let resource = FluentResource::try_new(sources[lang.index()].to_string())
                    .unwrap_or_else(|(_, e)| panic!("{}/{name}.ftl: {e:?}", lang.as_str()));
                // Also catches an id defined in two files of one language.
                bundle
                    .add_resource(resource)
                    .unwrap_or_else(|e| panic!("{}/{name}.ftl: {e:?}", lang.as_str()));
            }
        }
    }

    #[test]
    fn every_language_has_the_same_ids() {
        for (name, sources) in FILES {
            let en = ids(sources[Lang::En.index()]);
            assert!(!en.is_empty(), "{name}.ftl is empty");
            for lang in Lang::ALL {
                let other = ids(sources[lang.index()]);
                let missing: Vec<_> = en.difference(&other).collect();
                let extra: Vec<_> = other.difference(&en).collect();
                assert!(
                    missing.is_empty() && extra.is_empty(),
                    "{}/{name}.ftl: missing {missing:?}, not in en {extra:?}",
                    lang.as_str()
                );
            }
        }
    }

    #[test]
    fn negotiate_table() {
        let cases = [
            ("", Lang::En),
            ("*", Lang::En),
            ("it", Lang::It),
            ("it-IT", Lang::It),
            ("IT-it", Lang::It),
            ("it_CH", Lang::It),
            ("en-US,en;q=0.9", Lang::En),
            ("it-IT,it;q=0.9,en-US;q=0.8,en;q=0.7", Lang::It),
            ("en;q=0.5, it;q=0.8", Lang::It),
            ("en, it", Lang::En),
            ("it;q=0, en;q=0.1", Lang::En),
            ("it;q=0", Lang::En),
            ("de-DE,fr;q=0.9", Lang::En),
            ("de-DE, it;q=0.3", Lang::It),
            ("it;q=abc", Lang::It),
            ("garbage;;;,", Lang::En),
        ];
        for (header, want) in cases {
            assert_eq!(negotiate(header), want, "{header:?}");
        }
    }

    #[test]
    fn lang_basics() {
        assert_eq!(Lang::default(), Lang::En);
        for lang in Lang::ALL {
            assert_eq!(Lang::parse(lang.as_str()), Some(lang));
            assert_eq!(
                serde_json::to_string(&lang).unwrap(),
                format!("\"{}\"", lang.as_str())
            );
        }
        assert_eq!(Lang::parse("fr"), None);
        assert_eq!(Lang::It.label(), "Italiano");
    }

    #[test]
    fn argument_renders_in_both_languages() {
        let args = [("domain", "www.example.com"), ("order", "ord_1")];
        assert_eq!(
            t_args(Lang::En, "fulfillment-subject", &args),
            "Your SSL certificate for www.example.com is ready (order ord_1)"
        );
        assert_eq!(
            t_args(Lang::It, "fulfillment-subject", &args),
            "Il tuo certificato SSL per www.example.com è pronto (ordine ord_1)"
        );
    }

    #[test]
    fn missing_message_is_bracketed() {
        assert_eq!(t(Lang::It, "no-such-message"), "[no-such-message]");
        assert_eq!(
            t_count(Lang::En, "no-such-message", 2, &[]),
            "[no-such-message]"
        );
    }
}
