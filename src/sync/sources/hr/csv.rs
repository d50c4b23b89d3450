//! CSV exports: read the bytes (file or URL), decode them, check the header row
//! against the mapping, and map each row. A row that cannot be mapped (a bad
//! date, no email...) is reported with its line number and keeps its profile as
//! it is (it is not a leaver). A file that cannot be read or decoded, whose
//! header row lacks a mapped column, that ends inside a quoted value (cut off),
//! or that has rows with another number of fields than the header row (an
//! unquoted delimiter in a value, a truncated last row) fails the fetch: the
//! run applies nothing and deactivates nobody.

use std::collections::HashMap;

use super::map::{HrMapping, Record, RecordError};
use super::{CsvInput, CsvSource, FetchError, HrFetched};
use crate::sync::map::MapError;

/// One row: selectors are column headers (matched case-insensitively).
struct Row<'a> {
    columns: &'a HashMap<String, usize>,
    row: &'a ::csv::StringRecord,
}

impl Record for Row<'_> {
    fn values(&self, selector: &str) -> Result<Vec<String>, RecordError> {
        let idx = self
            .columns
            .get(&selector.trim().to_lowercase())
            .ok_or_else(|| RecordError::NoColumn(selector.to_string()))?;
        Ok(self
            .row
            .get(*idx)
            .map(|v| vec![v.to_string()])
            .unwrap_or_default())
    }
}

/// Why an export cannot be used: the fetch fails and the run applies nothing
/// (nobody is deactivated).
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error(
        "line {line} is not valid UTF-8; if the export is Windows-1252 / Latin-1, set encoding = \"windows-1252\""
    )]
    NotUtf8 { line: usize },
    #[error("the file is not valid {encoding}; check `encoding`")]
    NotInEncoding { encoding: &'static str },
    #[error("cannot read the header row: {0}")]
    Header(::csv::Error),
    #[error("the file is empty: a header row naming the columns is required")]
    Empty,
    #[error("column `{selector}` ({key}) appears more than once in the header row")]
    ColumnTwice { selector: String, key: String },
    /// `columns` are the header row's, comma-separated; `hint` is empty or
    /// starts with a space.
    #[error("no column `{selector}` ({key}) in the header row; the columns are: {columns}{hint}")]
    NoColumn {
        selector: String,
        key: String,
        columns: String,
        hint: &'static str,
    },
    #[error(
        "the quoted value opened on line {line} is never closed: the file looks cut off; \
         nothing from it is applied (nobody is deactivated) until a complete export is there"
    )]
    Unterminated { line: u64 },
    #[error(
        "line {line} cannot be read ({error}); nothing from the file is applied (nobody is deactivated)"
    )]
    Unreadable { line: u64, error: ::csv::Error },
    /// `shown` lists the first rows as `line N (fields)`.
    #[error(
        "{count} row(s) do not have the header row's {width} fields: {shown} ({hint}); \
         nothing from the file is applied (nobody is deactivated) until it is fixed"
    )]
    Misshapen {
        count: usize,
        width: usize,
        shown: String,
        hint: &'static str,
    },
}

/// Decodes the export. A byte-order mark wins over the configured encoding and
/// is dropped; bytes that are not valid in the encoding fail the fetch (a wrong
/// `encoding` would otherwise garble every accented name).
pub fn decode(bytes: &[u8], encoding: &'static encoding_rs::Encoding) -> Result<String, CsvError> {
    let (text, used, had_errors) = encoding.decode(bytes);
    if had_errors {
        if used == encoding_rs::UTF_8 {
            let at = std::str::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes))
                .err()
                .map(|e| e.valid_up_to())
                .unwrap_or(0);
            let line = bytes[..at.min(bytes.len())]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            return Err(CsvError::NotUtf8 { line });
        }
        return Err(CsvError::NotInEncoding {
            encoding: used.name(),
        });
    }
    Ok(text.into_owned())
}

/// The 1-based line a record starts on. The csv crate's position of a record
/// that follows blank lines is the first blank line; skip them.
fn line_of(text: &str, pos: Option<&::csv::Position>) -> u64 {
    let Some(pos) = pos else {
        return 0;
    };
    let start = usize::try_from(pos.byte())
        .unwrap_or(usize::MAX)
        .min(text.len());
    let blank = text[start..]
        .bytes()
        .take_while(|b| matches!(b, b'\n' | b'\r'))
        .filter(|b| *b == b'\n')
        .count() as u64;
    pos.line() + blank
}

/// Parses decoded CSV text and maps every row. Pure.
pub fn parse(
    text: &str,
    delimiter: u8,
    mapping: &HrMapping,
    tz: chrono_tz::Tz,
) -> Result<HrFetched, CsvError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(true)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(CsvError::Header)?.clone();
    let columns = header_columns(&headers, delimiter, mapping)?;
    if let Some(line) = unterminated_quote(text, delimiter) {
        return Err(CsvError::Unterminated { line });
    }
    let width = headers.len();
    let mut out = HrFetched::default();
    // Rows whose field count differs from the header's: (line, fields).
    let mut misshapen: Vec<(u64, usize)> = Vec::new();
    let mut last_line = 0u64;
    for result in reader.records() {
        let row = result.map_err(|e| CsvError::Unreadable {
            line: line_of(text, e.position()),
            error: e,
        })?;
        let line = line_of(text, row.position());
        last_line = line;
        if row.len() != width {
            misshapen.push((line, row.len()));
            continue;
        }
        let dn = format!("line {line}");
        let rec = Row {
            columns: &columns,
            row: &row,
        };
        match mapping.map(&rec, &dn, tz) {
            Ok(m) => out.entries.push(m),
            Err(message) => {
                let (key, email) = mapping.identify(&rec);
                out.errors
                    .push(MapError::new(dn, message.to_string()).of(key, email));
            }
        }
    }
    if let Some(e) = misshapen_rows(&misshapen, last_line, width) {
        return Err(e);
    }
    Ok(out)
}

/// The header row's columns (trimmed, lower-case) by index, once it names
/// every column the mapping reads, each once.
fn header_columns(
    headers: &::csv::StringRecord,
    delimiter: u8,
    mapping: &HrMapping,
) -> Result<HashMap<String, usize>, CsvError> {
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(CsvError::Empty);
    }
    let mut columns: HashMap<String, usize> = HashMap::new();
    let mut twice = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        let name = h.trim().to_lowercase();
        if columns.insert(name.clone(), i).is_some() {
            twice.push(name);
        }
    }
    for (sel, key) in mapping.selectors() {
        let lower = sel.trim().to_lowercase();
        if twice.contains(&lower) {
            return Err(CsvError::ColumnTwice {
                selector: sel.to_string(),
                key: key.to_string(),
            });
        }
        if !columns.contains_key(&lower) {
            let names: Vec<&str> = headers.iter().map(str::trim).collect();
            let hint = if delimiter != b';' && names.len() == 1 && names[0].contains(';') {
                " (the file looks `;`-separated: set delimiter = \";\")"
            } else {
                ""
            };
            return Err(CsvError::NoColumn {
                selector: sel.to_string(),
                key: key.to_string(),
                columns: names.join(", "),
                hint,
            });
        }
    }
    Ok(columns)
}

/// The error for rows whose field count is not the header row's `width`
/// (`misshapen`: line and fields), with the likely cause; `None` without any.
fn misshapen_rows(misshapen: &[(u64, usize)], last_line: u64, width: usize) -> Option<CsvError> {
    let &(line, fields) = misshapen.first()?;
    let last_cut = misshapen.len() == 1 && line == last_line;
    let mut shown: Vec<String> = misshapen
        .iter()
        .take(10)
        .map(|(l, n)| format!("line {l} ({n})"))
        .collect();
    if misshapen.len() > 10 {
        shown.push(format!("and {} more", misshapen.len() - 10));
    }
    let hint = if last_cut && fields < width {
        "the last row is cut off: the file looks truncated"
    } else if fields > width {
        "a value with the delimiter in it must be quoted, e.g. \"Smith, Jr.\""
    } else {
        "every row needs one field per column of the header row"
    };
    Some(CsvError::Misshapen {
        count: misshapen.len(),
        width,
        shown: shown.join(", "),
        hint,
    })
}

/// The line where a quoted value opens that the text never closes (a file cut
/// off inside a quoted value), following the csv crate's reading: a quote opens
/// a quoted value only at the start of a field, and `""` inside one is a quote.
fn unterminated_quote(text: &str, delimiter: u8) -> Option<u64> {
    #[derive(PartialEq)]
    enum S {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = S::FieldStart;
    let mut line = 1u64;
    let mut opened = 1u64;
    for b in text.bytes() {
        state = match (state, b) {
            (S::FieldStart, b'"') => {
                opened = line;
                S::Quoted
            }
            (S::FieldStart | S::Unquoted | S::QuoteInQuoted, b'\n') => S::FieldStart,
            (S::FieldStart | S::Unquoted | S::QuoteInQuoted, d) if d == delimiter => S::FieldStart,
            (S::Quoted, b'"') => S::QuoteInQuoted,
            (S::QuoteInQuoted, b'"') => S::Quoted,
            (S::Quoted, _) => S::Quoted,
            _ => S::Unquoted,
        };
        if b == b'\n' {
            line += 1;
        }
    }
    (state == S::Quoted).then_some(opened)
}

/// Reads an export file of at most `cap` bytes (the cap of an export fetched
/// over HTTPS): a larger one fails the run instead of filling memory. Reads at
/// most `cap + 1` bytes, so a file that grows meanwhile is caught too.
async fn read_file_capped(path: &std::path::Path, cap: usize) -> Result<Vec<u8>, FetchError> {
    use tokio::io::AsyncReadExt;
    let cannot = |e: std::io::Error| FetchError(format!("cannot read {}: {e}", path.display()));
    let too_big = |n: String| {
        FetchError(format!(
            "{} is larger than {} MiB ({n}); split the export",
            path.display(),
            cap / (1024 * 1024)
        ))
    };
    let file = tokio::fs::File::open(path).await.map_err(cannot)?;
    let len = file.metadata().await.map_err(cannot)?.len();
    if len > cap as u64 {
        return Err(too_big(format!("{len} bytes")));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(cap as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(cannot)?;
    if bytes.len() > cap {
        return Err(too_big(format!("more than {cap} bytes")));
    }
    Ok(bytes)
}

pub async fn fetch(src: &CsvSource, tz: chrono_tz::Tz) -> Result<HrFetched, FetchError> {
    let where_ = src.location();
    let bytes = match &src.input {
        CsvInput::File(path) => read_file_capped(path, super::http::MAX_RESPONSE_BYTES)
            .await?
            .into(),
        CsvInput::Url(spec) => super::http::get_bytes(spec).await?,
    };
    let text = decode(&bytes, src.encoding).map_err(|m| FetchError(format!("{where_}: {m}")))?;
    parse(&text, src.delimiter, &src.mapping, tz).map_err(|m| FetchError(format!("{where_}: {m}")))
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[tokio::test]
    async fn an_export_file_over_the_cap_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("people.csv");
        std::fs::write(&path, "email\nana@corp.example\n").unwrap();
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        assert_eq!(read_file_capped(&path, len).await.unwrap().len(), len);
        let e = read_file_capped(&path, len - 1).await.unwrap_err();
        assert!(e.0.contains("people.csv is larger than"), "{}", e.0);
        assert!(e.0.contains(&format!("{len} bytes")), "{}", e.0);
        let e = read_file_capped(&dir.path().join("missing.csv"), len)
            .await
            .unwrap_err();
        assert!(e.0.contains("cannot read"), "{}", e.0);
    }
}
