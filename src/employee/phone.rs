//! Phone numbers as directories, HR exports and identity providers write them:
//! one parser for every surface (LDAP and HR sources, SCIM, the admin API).
//!
//! It recognises an extension written inline (`x8413`, `ext 8413`, `ext. 8413`,
//! `extension 8413`, `#8413`, `;ext=8413`, RFC 3966 `tel:+1-617-555-9548;ext=8413`)
//! and splits it from the number; the number itself is kept as written (E.164,
//! national formats, with dots, slashes, dashes, spaces and parentheses), only
//! trimmed. It does not reformat, and it does not judge whether a number is
//! assigned in its country's numbering plan.
//!
//! Hand-written rather than built on the `phonenumber` crate (the Rust port of
//! libphonenumber), on purpose: that crate validates against each country's
//! numbering plan, so it refuses the national formats a directory holds without a
//! country code unless the region is known (rosterd's sources do not say it), and
//! refuses the fictional and internal numbers real directories contain (`555`
//! numbers, short internal lines); rosterd keeps the number as written anyway, so
//! what it needs is the extension split and a sanity check, not a formatter. The
//! crate also brings its metadata and a regex engine into a daemon that parses a
//! phone per synced entry.

/// Most digits a number may have (E.164 allows 15; an international prefix such
/// as `011` or `00` and a trunk prefix such as `(0)` come on top).
const MAX_DIGITS: usize = 20;
/// Fewest digits of a number (short internal lines have 3 or 4).
const MIN_DIGITS: usize = 3;
/// Longest number, in characters.
const MAX_CHARS: usize = 40;
/// Longest extension, in digits.
pub const MAX_EXTENSION: usize = 10;

/// A phone as parsed: the number as written, and the extension written after it
/// (digits only), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    pub number: String,
    pub extension: Option<String>,
}

/// The words and signs that introduce an inline extension, longest first; each
/// is matched ignoring case, right before the extension's digits (after optional
/// spaces, `:`, `=` or `.`, so `ext.`, `ext:` and `;ext=` are covered).
const MARKERS: [&str; 4] = ["extension", "ext", "x", "#"];

/// Why a value is not a phone number or an extension (the message quotes the
/// value and says what is accepted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("is empty")]
    Empty,
    #[error(
        "`{0}` is not an extension (up to {MAX_EXTENSION} digits, optionally written x42 or ext. 42)"
    )]
    NotAnExtension(String),
    #[error("`{whole}` has `{param}`, which is not an extension (up to {MAX_EXTENSION} digits)")]
    TelExtension { whole: String, param: String },
    #[error(
        "`{whole}` is not a phone number ({why}; digits with spaces, + - . / ( ) and an optional extension such as x42 or ;ext=42)"
    )]
    NotAPhone { whole: String, why: String },
}

/// Parses a phone number with an optional inline extension. `Err` says why the
/// value is not a phone number.
pub fn parse(raw: &str) -> Result<Phone, PhoneError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(PhoneError::Empty);
    }
    if let Some(rest) = strip_prefix_ci(s, "tel:") {
        return parse_tel(rest, s);
    }
    let (number, extension) = match split_inline_extension(s) {
        Some((n, e)) => (n, Some(e)),
        None => (s, None),
    };
    check_number(number, s)?;
    Ok(Phone {
        number: number.to_string(),
        extension: extension.map(str::to_string),
    })
}

/// An extension as a client may write it on its own (`42`, `x42`, `ext. 42`):
/// its digits, or why it is not an extension.
pub fn parse_extension(raw: &str) -> Result<Option<String>, PhoneError> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let lower = s.to_ascii_lowercase();
    let mut rest = lower.trim_start_matches(';');
    for m in MARKERS {
        if let Some(r) = rest.strip_prefix(m) {
            rest = r;
            break;
        }
    }
    let digits = rest
        .trim_start_matches([' ', ':', '=', '.', '\u{a0}'])
        .trim();
    if digits.is_empty()
        || digits.len() > MAX_EXTENSION
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(PhoneError::NotAnExtension(s.to_string()));
    }
    Ok(Some(digits.to_string()))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// RFC 3966: `tel:` number, then `;name=value` parameters (`ext`, `isub`,
/// `phone-context`); only `ext` is kept.
fn parse_tel(rest: &str, whole: &str) -> Result<Phone, PhoneError> {
    let mut parts = rest.split(';');
    let number = parts.next().unwrap_or("").trim();
    let mut extension = None;
    for p in parts {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        if k.trim().eq_ignore_ascii_case("ext") {
            let digits = v.trim().replace(['-', '.', '(', ')'], "");
            if digits.is_empty()
                || digits.len() > MAX_EXTENSION
                || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(PhoneError::TelExtension {
                    whole: whole.to_string(),
                    param: p.to_string(),
                });
            }
            extension = Some(digits);
        }
    }
    check_number(number, whole)?;
    Ok(Phone {
        number: number.to_string(),
        extension,
    })
}

/// `number [sep] marker [sep] digits` at the end of `s`, or the same in
/// parentheses (`(617) 555-9548 (ext. 8413)`) → `(number, digits)`.
fn split_inline_extension(s: &str) -> Option<(&str, &str)> {
    if let Some(inner) = s.strip_suffix(')')
        && let Some(open) = inner.rfind('(')
    {
        let ext = inner[open + 1..].trim();
        let lower = ext.to_ascii_lowercase();
        let marked = MARKERS.iter().any(|m| lower.starts_with(m));
        if marked && matches!(parse_extension(ext), Ok(Some(_))) {
            let digits = inner.len() - inner.bytes().rev().take_while(u8::is_ascii_digit).count();
            let number = s[..open].trim_end_matches([' ', '\u{a0}', ',', ';', '-', '/']);
            return Some((number, &inner[digits..]));
        }
    }
    split_marked(s)
}

/// [`split_inline_extension`] without the parenthesised form.
fn split_marked(s: &str) -> Option<(&str, &str)> {
    let digits_start = s
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_digit())
        .last()
        .map(|(i, _)| i)?;
    let digits = &s[digits_start..];
    if digits.len() > MAX_EXTENSION {
        return None;
    }
    let before = s[..digits_start].trim_end_matches([' ', '\u{a0}', ':', '=', '.']);
    let lower = before.to_ascii_lowercase();
    let marker = MARKERS.iter().find(|m| lower.ends_with(*m))?;
    let number_end = before.len() - marker.len();
    // A word marker must stand on its own (`x` after a digit, a space, a
    // parenthesis or a separator; never inside a word).
    if marker.starts_with(|c: char| c.is_ascii_alphabetic())
        && before[..number_end]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphabetic())
    {
        return None;
    }
    let number = before[..number_end].trim_end_matches([' ', '\u{a0}', ',', ';', '-', '/']);
    Some((number, digits))
}

/// The number part: digits and the usual separators, a `+` only in front, a
/// plausible count of digits.
fn check_number(number: &str, whole: &str) -> Result<(), PhoneError> {
    let not_a_phone = |why: &str| PhoneError::NotAPhone {
        whole: whole.to_string(),
        why: why.to_string(),
    };
    if number.chars().count() > MAX_CHARS {
        return Err(not_a_phone(&format!("longer than {MAX_CHARS} characters")));
    }
    let mut digits = 0;
    for (i, c) in number.char_indices() {
        match c {
            '0'..='9' => digits += 1,
            '+' if i == 0 => {}
            ' ' | '\u{a0}' | '-' | '.' | '/' | '(' | ')' => {}
            '+' => return Err(not_a_phone("a + only in front")),
            c => return Err(not_a_phone(&format!("it has `{c}`"))),
        }
    }
    if digits < MIN_DIGITS {
        return Err(not_a_phone(&format!("fewer than {MIN_DIGITS} digits")));
    }
    if digits > MAX_DIGITS {
        return Err(not_a_phone(&format!("more than {MAX_DIGITS} digits")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real-world forms, as directories, HR exports and IdPs write them:
    /// (input, number kept, extension).
    const FORMS: &[(&str, &str, Option<&str>)] = &[
        // Inline extensions.
        ("+1 617 555 9548 x8413", "+1 617 555 9548", Some("8413")),
        ("+1 617 555 9548 X8413", "+1 617 555 9548", Some("8413")),
        ("+1 617 555 9548x8413", "+1 617 555 9548", Some("8413")),
        ("+1 617 555 9548 x 8413", "+1 617 555 9548", Some("8413")),
        ("+1 617 555 9548 ext 8413", "+1 617 555 9548", Some("8413")),
        ("+1 617 555 9548 ext. 8413", "+1 617 555 9548", Some("8413")),
        ("+1 617 555 9548 Ext.8413", "+1 617 555 9548", Some("8413")),
        ("+1 617 555 9548 EXT: 8413", "+1 617 555 9548", Some("8413")),
        (
            "+1 617 555 9548 extension 8413",
            "+1 617 555 9548",
            Some("8413"),
        ),
        (
            "(617) 555-9548 Extension 8413",
            "(617) 555-9548",
            Some("8413"),
        ),
        ("617-555-9548, ext. 8413", "617-555-9548", Some("8413")),
        ("(617) 555-9548 (ext. 8413)", "(617) 555-9548", Some("8413")),
        ("+1 617 555 9548 (x8413)", "+1 617 555 9548", Some("8413")),
        ("617.555.9548 #8413", "617.555.9548", Some("8413")),
        ("617.555.9548#8413", "617.555.9548", Some("8413")),
        ("+1 617 555 9548;ext=8413", "+1 617 555 9548", Some("8413")),
        ("+1-617-555-9548 ;ext=8413", "+1-617-555-9548", Some("8413")),
        // RFC 3966.
        (
            "tel:+1-617-555-9548;ext=8413",
            "+1-617-555-9548",
            Some("8413"),
        ),
        (
            "TEL:+1-617-555-9548;EXT=8413",
            "+1-617-555-9548",
            Some("8413"),
        ),
        ("tel:+1-617-555-9548", "+1-617-555-9548", None),
        ("tel:7042;phone-context=example.com", "7042", None),
        // Numbers without an extension, kept as written.
        ("+16175559548", "+16175559548", None),
        ("  +1 (617) 555-9548  ", "+1 (617) 555-9548", None),
        ("(617) 555-9548", "(617) 555-9548", None),
        ("617.555.9548", "617.555.9548", None),
        ("617/555-9548", "617/555-9548", None),
        ("+44 (0)20 7946 0958", "+44 (0)20 7946 0958", None),
        ("020 7946 0958", "020 7946 0958", None),
        ("+49 30 1234-5678", "+49 30 1234-5678", None),
        ("089 / 12 34 56", "089 / 12 34 56", None),
        ("0033 1 23 45 67 89", "0033 1 23 45 67 89", None),
        ("+33 1.23.45.67.89", "+33 1.23.45.67.89", None),
        ("011 81 3-1234-5678", "011 81 3-1234-5678", None),
        (
            "+1\u{a0}617\u{a0}555\u{a0}9548",
            "+1\u{a0}617\u{a0}555\u{a0}9548",
            None,
        ),
        ("8413", "8413", None),
    ];

    #[test]
    fn real_world_forms_split_the_extension_and_keep_the_number() {
        for (raw, number, ext) in FORMS {
            let p = parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!(
                (p.number.as_str(), p.extension.as_deref()),
                (*number, *ext),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn what_is_not_a_phone_is_refused_with_the_value() {
        for raw in [
            "",
            "call me",
            "n/a",
            "12",
            "+1 617 555 9548 ext",
            "1-800-FLOWERS",
            "+1 617 +555",
            "617 555 9548 x12345678901",
            "tel:+1-617-555-9548;ext=abc",
            "123456789012345678901",
            "office: 617 555 9548",
        ] {
            let e = parse(raw).expect_err(raw);
            if !raw.is_empty() {
                assert!(e.to_string().contains(raw.trim()), "{raw:?}: {e}");
            }
        }
    }

    #[test]
    fn extensions_on_their_own_take_the_same_forms() {
        for (raw, want) in [
            ("42", Some("42")),
            (" x42 ", Some("42")),
            ("ext. 42", Some("42")),
            ("Extension 42", Some("42")),
            ("#42", Some("42")),
            (";ext=42", Some("42")),
            ("", None),
        ] {
            assert_eq!(parse_extension(raw).unwrap().as_deref(), want, "{raw:?}");
        }
        for raw in ["4a2", "x", "12345678901", "ext 4 2"] {
            assert!(parse_extension(raw).is_err(), "{raw:?}");
        }
    }
}
