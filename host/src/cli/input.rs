//! Where `map`'s inputs come from, and where each one came from:
//!
//! - JSON lines (the default): each non-blank line is one JSON value;
//! - `--raw` (`-R`, like `jq -R`): each line is text, given to the task as a
//!   JSON string;
//! - `--input-array FILE`: the elements of one JSON array, read as a stream
//!   (the file is never held whole), pretty-printed or not;
//! - `--range A..B` (or `A..=B`): the integers from A up to B, half-open as
//!   in Rust.
//!
//! Every input carries its [`Origin`] (the line it starts on, and the column
//! when the task gets the file's bytes as they are), so that an error about
//! it names `file:line` (and `file:line:column` where serde points inside it).

use std::fmt;
use std::io::{self, BufRead};

use anyhow::bail;

/// The longest input read as one task: a longer one is an `input` error of
/// its own (the rest of it is skipped), so one line cannot take the host's
/// memory.
pub(crate) const MAX_INPUT: usize = 64 << 20;

/// How deep `--input-array` checks that each bracket closes the one it
/// should; deeper brackets are only counted. serde reads JSON at most 128
/// deep, so an element past this fails alone either way.
const MAX_CHECKED_DEPTH: usize = 1024;

/// The UTF-8 byte order mark, skipped where a file starts with it.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where an input's text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The line (from 1) the input starts on; for `--range`, the value's
    /// position in the range (from 1), as if the range were `seq`'s lines.
    pub(crate) line: u64,
    /// The column (from 1, in bytes) the input starts at, when the task gets
    /// the file's bytes as they are (JSON lines, array elements); `None` when
    /// its text was made from the input (`--raw`, `--range`), so a position
    /// inside that text means nothing in the file.
    pub(crate) column: Option<u64>,
}

/// One input: the JSON text the task gets, where it came from, and what is
/// already known to be wrong with it (too long, not UTF-8 under `--raw`).
pub(crate) struct Item<'a> {
    pub(crate) text: &'a [u8],
    pub(crate) origin: Origin,
    pub(crate) problem: Option<String>,
}

/// A stream of inputs. `Err` means the input cannot be read any further (a
/// read error, a broken array): the run stops after the inputs before it.
pub(crate) trait Source {
    /// The next input, or `None` at the end.
    fn next_item(&mut self) -> anyhow::Result<Option<Item<'_>>>;
}

/// Lines of a reader: JSON lines (blank ones skipped, but counted), or with
/// `raw`, every line as a JSON string (blank ones too, as `""`).
pub(crate) struct Lines {
    reader: Box<dyn BufRead>,
    name: String,
    raw: bool,
    line: u64,
    buf: Vec<u8>,
    json: Vec<u8>,
}

impl Lines {
    /// The lines of `reader`, called `name` in errors.
    pub(crate) fn new(reader: Box<dyn BufRead>, name: &str, raw: bool) -> Self {
        Lines {
            reader,
            name: name.to_string(),
            raw,
            line: 0,
            buf: Vec::new(),
            json: Vec::new(),
        }
    }
}

impl Source for Lines {
    fn next_item(&mut self) -> anyhow::Result<Option<Item<'_>>> {
        let (end, too_long) = loop {
            self.buf.clear();
            let limit = MAX_INPUT as u64 + 1;
            let read = io::Read::take(&mut self.reader, limit).read_until(b'\n', &mut self.buf);
            match read {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(cannot_read(&self.name, e)),
            }
            self.line += 1;
            if self.line == 1 && self.buf.starts_with(BOM) {
                self.buf.drain(..BOM.len());
            }
            let too_long = self.buf.len() > MAX_INPUT;
            if too_long {
                skip_line(&mut self.reader).map_err(|e| cannot_read(&self.name, e))?;
            }
            // The task gets the text, not its line ending.
            let end = self.buf.len()
                - usize::from(self.buf.ends_with(b"\n"))
                - usize::from(self.buf.ends_with(b"\r\n"));
            let end = end.min(MAX_INPUT);
            if self.raw || !self.buf[..end].trim_ascii().is_empty() {
                break (end, too_long);
            }
        };
        let text = &self.buf[..end];
        let origin = Origin {
            line: self.line,
            column: (!self.raw).then_some(1),
        };
        let mut problem = too_long.then(|| {
            format!("the line is longer than {MAX_INPUT} bytes, the most one input may be")
        });
        if !self.raw {
            return Ok(Some(Item {
                text,
                origin,
                problem,
            }));
        }
        self.json.clear();
        if problem.is_none() {
            match std::str::from_utf8(text) {
                // Writing a string to a Vec cannot fail.
                Ok(s) => serde_json::to_writer(&mut self.json, s).expect("a string serializes"),
                Err(e) => {
                    problem = Some(format!(
                        "the line is not UTF-8 text (byte {} is not), so it cannot be a JSON string",
                        e.valid_up_to() + 1
                    ));
                }
            }
        }
        Ok(Some(Item {
            text: &self.json,
            origin,
            problem,
        }))
    }
}

/// Reads past the rest of the current line, without keeping it.
fn skip_line(reader: &mut dyn BufRead) -> io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

fn cannot_read(name: &str, e: io::Error) -> anyhow::Error {
    anyhow::Error::new(e).context(format!("{name}: cannot read the input"))
}

/// The elements of one JSON array, read as a stream: each element's text is
/// handed on as it is in the file (whitespace inside it included), so that
/// serde's positions inside it map back to the file. Only the array's
/// structure is checked here (brackets, commas, strings); each element is
/// checked as JSON when the task parses it, and fails alone.
pub(crate) struct ArrayElements {
    reader: Box<dyn BufRead>,
    name: String,
    /// Where the next byte is, from 1.
    line: u64,
    column: u64,
    state: ArrayState,
    buf: Vec<u8>,
    /// The brackets open inside the current element, the innermost
    /// [`MAX_CHECKED_DEPTH`] of them.
    open: Vec<u8>,
    /// How many brackets are open past the depth `open` holds: only
    /// counted, so that endless `[[[[...` costs no memory (an element that
    /// deep is no JSON serde reads: it fails alone when the task parses it).
    deeper: u64,
    /// The longest element kept ([`MAX_INPUT`]).
    max: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrayState {
    /// Before the `[`.
    Start,
    /// After the `[` or a `,`: an element comes next (or `]` after `[`).
    Element { first: bool },
    /// After the `]`.
    Done,
}

impl ArrayElements {
    /// The elements of the array `reader` holds, called `name` in errors.
    pub(crate) fn new(reader: Box<dyn BufRead>, name: &str) -> Self {
        ArrayElements {
            reader,
            name: name.to_string(),
            line: 1,
            column: 1,
            state: ArrayState::Start,
            buf: Vec::new(),
            open: Vec::new(),
            deeper: 0,
            max: MAX_INPUT,
        }
    }

    fn peek(&mut self) -> anyhow::Result<Option<u8>> {
        match self.reader.fill_buf() {
            Ok(buf) => Ok(buf.first().copied()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.peek(),
            Err(e) => Err(cannot_read(&self.name, e)),
        }
    }

    /// Moves past byte `b` (the one `peek` returned).
    fn bump(&mut self, b: u8) {
        self.reader.consume(1);
        if b == b'\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
    }

    /// Skips the UTF-8 byte order mark that some editors put first (as a
    /// column of its own).
    fn skip_bom(&mut self) -> anyhow::Result<&mut Self> {
        let starts = loop {
            match self.reader.fill_buf() {
                Ok(buf) => break buf.starts_with(BOM),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(cannot_read(&self.name, e)),
            }
        };
        if starts && self.line == 1 && self.column == 1 {
            self.reader.consume(BOM.len());
            self.column += 1;
        }
        Ok(self)
    }

    /// Skips whitespace; the byte after it, not consumed.
    fn skip_space(&mut self) -> anyhow::Result<Option<u8>> {
        loop {
            match self.peek()? {
                Some(b @ (b' ' | b'\t' | b'\r' | b'\n')) => self.bump(b),
                other => return Ok(other),
            }
        }
    }

    /// A structural error at the current position.
    fn broken(&self, what: impl fmt::Display) -> anyhow::Error {
        anyhow::anyhow!(
            "{}:{}:{}: {what} (--input-array reads one JSON array)",
            self.name,
            self.line,
            self.column
        )
    }

    /// Reads one element into `buf` (as far as `max` bytes); whether it
    /// was longer.
    fn element(&mut self) -> anyhow::Result<bool> {
        self.buf.clear();
        self.open.clear();
        self.deeper = 0;
        let (mut in_string, mut escaped, mut too_long) = (false, false, false);
        let (line, column) = (self.line, self.column);
        loop {
            let Some(b) = self.peek()? else {
                if in_string || !self.open.is_empty() {
                    return Err(self.broken(format_args!(
                        "the file ends inside the element that starts at line {line} column {column}"
                    )));
                }
                return Ok(too_long);
            };
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
            } else {
                match b {
                    b'"' => in_string = true,
                    b'[' | b'{' if self.open.len() == MAX_CHECKED_DEPTH => self.deeper += 1,
                    b'[' | b'{' => self.open.push(b),
                    b']' | b'}' if self.deeper > 0 => self.deeper -= 1,
                    b']' | b'}' => {
                        let opener = if b == b']' { b'[' } else { b'{' };
                        match self.open.pop() {
                            None => return Ok(too_long),
                            Some(o) if o == opener => {}
                            Some(o) => {
                                return Err(self.broken(format_args!(
                                    "`{}` closes a `{}` in the element that starts at line {line} column {column}",
                                    b as char, o as char
                                )));
                            }
                        }
                    }
                    b',' | b' ' | b'\t' | b'\r' | b'\n' if self.open.is_empty() => {
                        return Ok(too_long);
                    }
                    _ => {}
                }
            }
            if self.buf.len() < self.max {
                self.buf.push(b);
            } else {
                too_long = true;
            }
            self.bump(b);
            if !in_string && self.open.is_empty() && matches!(b, b']' | b'}') {
                return Ok(too_long);
            }
        }
    }
}

impl Source for ArrayElements {
    fn next_item(&mut self) -> anyhow::Result<Option<Item<'_>>> {
        loop {
            match self.state {
                ArrayState::Done => {
                    return match self.skip_space()? {
                        None => Ok(None),
                        Some(_) => Err(self.broken("more text after the end of the array")),
                    };
                }
                ArrayState::Start => match self.skip_bom()?.skip_space()? {
                    Some(b'[') => {
                        self.bump(b'[');
                        self.state = ArrayState::Element { first: true };
                    }
                    None => bail!(
                        "{}: the file is empty, but --input-array reads one JSON array (`[]` for none)",
                        self.name
                    ),
                    Some(_) => {
                        return Err(self.broken(
                            "expected `[`: the file is not a JSON array; for one JSON value per line, use --input instead",
                        ));
                    }
                },
                ArrayState::Element { first } => {
                    match self.skip_space()? {
                        Some(b']') if first => {
                            self.bump(b']');
                            self.state = ArrayState::Done;
                            continue;
                        }
                        None => {
                            return Err(self.broken("the file ends before the array's closing `]`"));
                        }
                        Some(b @ (b',' | b']')) => {
                            return Err(self.broken(format_args!(
                                "expected an element, found `{}`",
                                b as char
                            )));
                        }
                        Some(_) => {}
                    }
                    let origin = Origin {
                        line: self.line,
                        column: Some(self.column),
                    };
                    let too_long = self.element()?;
                    match self.skip_space()? {
                        Some(b',') => {
                            self.bump(b',');
                            self.state = ArrayState::Element { first: false };
                        }
                        Some(b']') => {
                            self.bump(b']');
                            self.state = ArrayState::Done;
                        }
                        None => {
                            return Err(self.broken("the file ends before the array's closing `]`"));
                        }
                        Some(_) => {
                            return Err(self.broken(format_args!(
                                "expected `,` or `]` after the element that starts at line {} column {}",
                                origin.line,
                                origin.column.unwrap_or(1)
                            )));
                        }
                    }
                    let problem = too_long.then(|| {
                        let max = self.max;
                        format!("the element is longer than {max} bytes, the most one input may be")
                    });
                    return Ok(Some(Item {
                        text: &self.buf,
                        origin,
                        problem,
                    }));
                }
            }
        }
    }
}

/// `--range A..B` (half-open, as in Rust) or `A..=B` (inclusive), of `i64`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) start: i64,
    /// One past the last value (an `i128`, so `A..=i64::MAX` fits).
    pub(crate) end: i128,
    inclusive: bool,
}

impl Range {
    /// How many values the range has.
    pub(crate) fn len(&self) -> u128 {
        (self.end - i128::from(self.start)).max(0) as u128
    }

    /// What errors call the range's inputs, as `<stdin>` is stdin's.
    pub(crate) fn name(&self) -> String {
        format!("<range {self}>")
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.inclusive {
            write!(f, "{}..={}", self.start, self.end - 1)
        } else {
            write!(f, "{}..{}", self.start, self.end)
        }
    }
}

/// Parses `A..B` or `A..=B`, both integers (an `i64`); the end may not come
/// before the start.
pub(crate) fn parse_range(s: &str) -> Result<Range, String> {
    let usage =
        || format!("{s:?} is not a range such as 0..100 (A..B runs from A to B-1, A..=B to B)");
    let (a, b, inclusive) = match s.split_once("..") {
        Some((a, b)) => match b.strip_prefix('=') {
            Some(b) => (a, b, true),
            None => (a, b, false),
        },
        None => return Err(usage()),
    };
    let int = |t: &str| -> Result<i64, String> {
        t.trim().parse::<i64>().map_err(|e| match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                format!("{s:?}: {t:?} does not fit an i64")
            }
            _ => usage(),
        })
    };
    let (start, last) = (int(a)?, int(b)?);
    let end = i128::from(last) + i128::from(inclusive);
    if end < i128::from(start) {
        return Err(format!(
            "{s:?}: the end comes before the start (for a count down, map over a file)"
        ));
    }
    Ok(Range {
        start,
        end,
        inclusive,
    })
}

/// The integers of a [`Range`], each as its decimal text.
pub(crate) struct RangeValues {
    next: i128,
    end: i128,
    position: u64,
    buf: Vec<u8>,
}

impl RangeValues {
    /// The values of `range`.
    pub(crate) fn new(range: Range) -> Self {
        RangeValues {
            next: range.start.into(),
            end: range.end,
            position: 0,
            buf: Vec::with_capacity(24),
        }
    }
}

impl RangeValues {
    /// The values of `range` from its `first`th on (from 0), each at its
    /// position in the whole range: a shard of it.
    pub(crate) fn starting_at(range: Range, first: u64) -> Self {
        let mut values = RangeValues::new(range);
        values.next = (values.next + i128::from(first)).min(values.end);
        values.position = first;
        values
    }
}

impl Source for RangeValues {
    fn next_item(&mut self) -> anyhow::Result<Option<Item<'_>>> {
        if self.next >= self.end {
            return Ok(None);
        }
        self.buf.clear();
        use io::Write as _;
        write!(self.buf, "{}", self.next).expect("writing to a Vec cannot fail");
        self.next += 1;
        self.position += 1;
        Ok(Some(Item {
            text: &self.buf,
            origin: Origin {
                line: self.position,
                column: None,
            },
            problem: None,
        }))
    }
}

/// The message of an `input` error about the input from `origin` of `name`,
/// located: `name:line: message`, or `name:line:column: message` where the
/// message ends in serde's ` at line L column C` inside the input's text and
/// that text is the file's own. serde's position inside text wasmpool made
/// (`--raw`, `--range`) is dropped: it would point nowhere in the file.
pub(crate) fn locate(name: &str, origin: Origin, message: &str) -> String {
    let (message, inner) = split_serde_position(message);
    match (inner, origin.column) {
        (Some((line, column)), Some(start)) if line >= 1 && column >= 1 => {
            let (file_line, file_column) = if line == 1 {
                (origin.line, start + column - 1)
            } else {
                (origin.line + line - 1, column)
            };
            format!("{name}:{file_line}:{file_column}: {message}")
        }
        _ => format!("{name}:{}: {message}", origin.line),
    }
}

/// `message` without serde_json's trailing ` at line L column C`, and that
/// position.
fn split_serde_position(message: &str) -> (&str, Option<(u64, u64)>) {
    let parse = || {
        let (rest, column) = message.rsplit_once(" column ")?;
        let (rest, line) = rest.rsplit_once(" at line ")?;
        let number = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten()
        };
        Some((rest, (number(line)?, number(column)?)))
    };
    match parse() {
        Some((rest, position)) => (rest, Some(position)),
        None => (message, None),
    }
}

/// Splits a located message (`name:line: rest` or `name:line:column:
/// rest`, as [`locate`] writes them) into its location and the rest.
pub(crate) fn split_location<'m>(name: &str, message: &'m str) -> Option<(&'m str, &'m str)> {
    let after = message.strip_prefix(name)?.strip_prefix(':')?;
    let (position, rest) = after.split_once(": ")?;
    let well_formed = position
        .split(':')
        .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && position.split(':').count() <= 2;
    well_formed.then(|| (&message[..name.len() + 1 + position.len()], rest))
}

/// A hint for a JSON line that does not parse, when it looks like something
/// other than JSON: plain text (`--raw`), or the first line of a
/// pretty-printed array (`--input-array`).
pub(crate) fn json_line_hint(text: &[u8]) -> Option<&'static str> {
    let text = text.trim_ascii();
    match text.first() {
        _ if text == b"[" => Some(
            "a lone `[` looks like the start of a JSON array over several lines: read it with --input-array FILE",
        ),
        // JSON's own punctuation: broken JSON, not text.
        Some(b'[' | b'{' | b'"' | b']' | b'}' | b',' | b':') | None => None,
        Some(_) => Some(
            "if the input is plain text, pass --raw (-R) to give each line to the task as a JSON string",
        ),
    }
}

/// What to say when `map` waits for input typed at a terminal: lines, or
/// (`array`) one JSON array.
pub(crate) fn terminal_hint(array: bool) -> &'static str {
    if array {
        "reading a JSON array from the terminal; end with Ctrl-D, or pass --input-array FILE"
    } else {
        "reading inputs from the terminal, one per line; end with Ctrl-D, or pass --input FILE"
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn items(mut source: impl Source) -> anyhow::Result<Vec<(String, u64, Option<u64>)>> {
        let mut out = Vec::new();
        while let Some(item) = source.next_item()? {
            assert!(item.problem.is_none(), "{:?}", item.problem);
            let text = String::from_utf8(item.text.to_vec()).unwrap();
            out.push((text, item.origin.line, item.origin.column));
        }
        Ok(out)
    }

    fn array(text: &str) -> anyhow::Result<Vec<(String, u64, Option<u64>)>> {
        items(ArrayElements::new(
            Box::new(io::Cursor::new(text.as_bytes().to_vec())),
            "a.json",
        ))
    }

    fn own(v: &[(&str, u64, u64)]) -> Vec<(String, u64, Option<u64>)> {
        v.iter()
            .map(|&(t, l, c)| (t.to_string(), l, Some(c)))
            .collect()
    }

    #[test]
    fn array_elements_keep_their_text_and_position() {
        let got = array("[1, \"a,]\\\"\" ,{\"k\": [1, {}]},\n  [2,3],null]").unwrap();
        assert_eq!(
            got,
            own(&[
                ("1", 1, 2),
                ("\"a,]\\\"\"", 1, 5),
                ("{\"k\": [1, {}]}", 1, 14),
                ("[2,3]", 2, 3),
                ("null", 2, 9),
            ])
        );
        let pretty = "[\n  {\n    \"x\": 1\n  },\n  2\n]\n";
        assert_eq!(
            array(pretty).unwrap(),
            own(&[("{\n    \"x\": 1\n  }", 2, 3), ("2", 5, 3)])
        );
        assert_eq!(array(" [ ] \n").unwrap(), own(&[]));
    }

    #[test]
    fn an_element_past_the_limit_is_a_problem_of_its_own() {
        let text = "[1, \"0123456789\", [1, 2, 3, 4, 5, 6], 2]";
        let mut elements =
            ArrayElements::new(Box::new(io::Cursor::new(text.as_bytes().to_vec())), "a");
        elements.max = 8;
        let mut got = Vec::new();
        while let Some(item) = elements.next_item().unwrap() {
            got.push((item.text.len(), item.origin.column, item.problem.is_some()));
        }
        assert_eq!(
            got,
            [
                (1, Some(2), false),
                (8, Some(5), true),
                (8, Some(19), true),
                (1, Some(39), false)
            ],
            "the rest of a long element is read past, not kept"
        );
    }

    #[test]
    fn deep_nesting_is_counted_not_kept() {
        let depth = 1_000_000;
        let text = format!("[{}{}, 2]", "[".repeat(depth), "]".repeat(depth));
        let mut elements = ArrayElements::new(Box::new(io::Cursor::new(text.into_bytes())), "a");
        let first = elements.next_item().unwrap().unwrap();
        assert_eq!(first.text.len(), 2 * depth);
        assert!(
            elements.open.capacity() <= MAX_CHECKED_DEPTH,
            "a million `[` took {} bytes of brackets",
            elements.open.capacity()
        );
        assert_eq!(elements.next_item().unwrap().unwrap().text, b"2");
        // A mismatch within the checked depth is still found where it is.
        let inner = format!("[{}}}{}]", "[".repeat(10), "]".repeat(9));
        let err = array(&inner).unwrap_err().to_string();
        assert!(err.starts_with("a.json:1:12: `}` closes a `[`"), "{err}");
    }

    #[test]
    fn a_byte_order_mark_first_is_skipped() {
        assert_eq!(
            array("\u{feff}[1, 2]").unwrap(),
            own(&[("1", 1, 3), ("2", 1, 6)])
        );
        let lines = Lines::new(
            Box::new(io::Cursor::new(b"\xEF\xBB\xBF1\n\xEF\xBB\xBF2\n".to_vec())),
            "a",
            false,
        );
        let got = items(lines).unwrap();
        assert_eq!(got[0].0, "1");
        assert_eq!(
            got[1].0, "\u{feff}2",
            "only the file's first bytes are a mark"
        );
    }

    #[test]
    fn broken_arrays_are_refused_where_they_break() {
        let err = |text: &str| array(text).unwrap_err().to_string();
        assert!(err("").contains("a.json: the file is empty"), "{}", err(""));
        assert!(err("1\n2\n").starts_with("a.json:1:1: expected `[`"));
        assert!(err("[1 2]").starts_with("a.json:1:4: expected `,` or `]`"));
        assert!(err("[1,]").starts_with("a.json:1:4: expected an element, found `]`"));
        assert!(err("[1,2").starts_with("a.json:1:5: the file ends before"));
        assert!(err("[{\"a\": [1}]").contains("`}` closes a `[`"));
        assert!(err("[\"open]").contains("the file ends inside the element"));
        assert!(err("[1] 2").starts_with("a.json:1:5: more text after the end"));
    }

    #[test]
    fn raw_lines_become_json_strings_and_keep_blank_lines() {
        let input = "plain text\n\n\"quoted\" \\ tab\there\r\nlast";
        let got = items(Lines::new(
            Box::new(io::Cursor::new(input.as_bytes().to_vec())),
            "in.txt",
            true,
        ))
        .unwrap();
        let texts: Vec<&str> = got.iter().map(|(t, _, _)| t.as_str()).collect();
        assert_eq!(
            texts,
            [
                r#""plain text""#,
                r#""""#,
                r#""\"quoted\" \\ tab\there""#,
                r#""last""#
            ]
        );
        assert!(got.iter().all(|(_, _, column)| column.is_none()));
        let lines: Vec<u64> = got.iter().map(|(_, l, _)| *l).collect();
        assert_eq!(lines, [1, 2, 3, 4]);
        let mut bad = Lines::new(
            Box::new(io::Cursor::new(b"ok\n\xffno\n".to_vec())),
            "x",
            true,
        );
        assert!(bad.next_item().unwrap().unwrap().problem.is_none());
        let item = bad.next_item().unwrap().unwrap();
        assert_eq!(item.origin.line, 2);
        assert!(item.problem.unwrap().contains("not UTF-8"));
    }

    #[test]
    fn ranges_are_half_open_like_rust() {
        let r = parse_range("-2..3").unwrap();
        assert_eq!((r.len(), r.to_string()), (5, "-2..3".to_string()));
        let got = items(RangeValues::new(r)).unwrap();
        let texts: Vec<&str> = got.iter().map(|(t, _, _)| t.as_str()).collect();
        assert_eq!(texts, ["-2", "-1", "0", "1", "2"]);
        assert_eq!(got[4].1, 5, "the fifth value is at position 5");
        assert_eq!(parse_range("1..=3").unwrap().len(), 3);
        assert_eq!(parse_range("5..5").unwrap().len(), 0);
        let max = parse_range("9223372036854775806..=9223372036854775807").unwrap();
        assert_eq!(items(RangeValues::new(max)).unwrap().len(), 2);
        assert!(
            parse_range("5..3")
                .unwrap_err()
                .contains("end comes before")
        );
        assert!(parse_range("1-10").unwrap_err().contains("not a range"));
        assert!(parse_range("0..1e3").unwrap_err().contains("not a range"));
        assert!(
            parse_range("0..99999999999999999999")
                .unwrap_err()
                .contains("fit an i64")
        );
    }

    #[test]
    fn serde_positions_map_to_the_file_or_are_dropped() {
        let line = |line, column| Origin { line, column };
        let m = "missing field `y` at line 1 column 7";
        assert_eq!(
            locate("in", line(3, Some(1)), m),
            "in:3:7: missing field `y`"
        );
        assert_eq!(
            locate("in", line(3, Some(5)), m),
            "in:3:11: missing field `y`"
        );
        let deeper = "missing field `y` at line 3 column 2";
        assert_eq!(
            locate("in", line(2, Some(3)), deeper),
            "in:4:2: missing field `y`"
        );
        assert_eq!(locate("in", line(3, None), m), "in:3: missing field `y`");
        assert_eq!(locate("in", line(3, Some(1)), "too big"), "in:3: too big");
        assert_eq!(
            split_location("in", "in:3:7: missing: x"),
            Some(("in:3:7", "missing: x"))
        );
        assert_eq!(split_location("in", "in:3: x"), Some(("in:3", "x")));
        assert_eq!(split_location("in", "inx:3: x"), None);
        assert_eq!(split_location("in", "in: x"), None);
    }

    #[test]
    fn hints_only_for_what_is_not_json_shaped() {
        assert!(json_line_hint(b"hello world").unwrap().contains("--raw"));
        assert!(json_line_hint(b"12 apples").unwrap().contains("--raw"));
        assert!(json_line_hint(b" [ ").unwrap().contains("--input-array"));
        assert_eq!(json_line_hint(b"{oops"), None);
        assert_eq!(json_line_hint(b"[1,"), None);
        assert_eq!(json_line_hint(b"]"), None);
    }
}
