//! A task stream entry: one input, or `--batch B` consecutive ones.
//!
//! Fields: `i`, the first input's index; `o`, each input's origin in its
//! file (`LINE` or `LINE:COLUMN`, space-separated); `x`, the inputs' texts
//! joined by `\n` (an input is one line of its file, so none holds one).

use redis::Value;

/// One input of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Its index in the job (from 0).
    pub index: u64,
    /// Its line in the input file (from 1).
    pub line: u64,
    /// Its column, when the task gets the file's own bytes.
    pub column: Option<u64>,
    /// The text the task parses.
    pub text: Vec<u8>,
}

/// An entry delivered to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The stream entry's id.
    pub id: String,
    /// How many times it has been delivered, this time included.
    pub deliveries: u64,
    /// Its inputs, consecutive.
    pub inputs: Vec<Input>,
}

/// The fields of an entry holding `inputs` (consecutive, non-empty).
pub(crate) fn encode(inputs: &[Input]) -> [(&'static str, Vec<u8>); 3] {
    let first = inputs.first().map_or(0, |i| i.index);
    let origins: Vec<String> = inputs
        .iter()
        .map(|i| match i.column {
            Some(c) => format!("{}:{c}", i.line),
            None => i.line.to_string(),
        })
        .collect();
    let texts: Vec<&[u8]> = inputs.iter().map(|i| i.text.as_slice()).collect();
    [
        ("i", first.to_string().into_bytes()),
        ("o", origins.join(" ").into_bytes()),
        ("x", texts.join(&b'\n')),
    ]
}

/// The most inputs one entry may hold: `map --broker --batch`'s largest B.
/// An entry of more is not ours: each input costs a worker hundreds of
/// bytes to run and answer, so 8 MB of one-byte inputs took 1.6 GB.
pub(crate) const MAX_INPUTS: usize = 65_536;

/// The inputs of an entry's fields; `None` if they are not ours (the
/// reason is logged as a warning, so a worker names what it drops).
pub(crate) fn decode(fields: &std::collections::HashMap<String, Value>) -> Option<Vec<Input>> {
    match parse(fields) {
        Ok(inputs) => Some(inputs),
        Err(why) => {
            tracing::warn!("a task entry that is not wasmpool's: {why}");
            None
        }
    }
}

/// [`decode`], saying why an entry is not ours. Checks the counts before
/// anything is allocated for the inputs.
fn parse(fields: &std::collections::HashMap<String, Value>) -> Result<Vec<Input>, String> {
    let bytes = |name: &str| match fields.get(name) {
        Some(Value::BulkString(b)) => Ok(b.as_slice()),
        Some(_) => Err(format!("its field `{name}` is not a string")),
        None => Err(format!("it has no field `{name}`")),
    };
    let first = std::str::from_utf8(bytes("i")?)
        .ok()
        .and_then(|i| i.parse::<u64>().ok())
        .ok_or("its field `i` is not an input index")?;
    let origins = std::str::from_utf8(bytes("o")?)
        .map_err(|_| "its field `o` is not UTF-8 text".to_string())?;
    let texts = bytes("x")?;
    let count = origins.split(' ').count();
    if count > MAX_INPUTS {
        return Err(format!(
            "it has {count} inputs, more than the {MAX_INPUTS} one entry may hold"
        ));
    }
    let text_count = texts.split(|&b| b == b'\n').count();
    if count != text_count {
        return Err(format!(
            "its field `o` names {count} inputs, but `x` holds {text_count}"
        ));
    }
    if first.checked_add(count as u64 - 1).is_none() {
        return Err(format!("its inputs' indices ({first} on) pass 2^64"));
    }
    let mut inputs = Vec::with_capacity(count);
    for (k, (origin, text)) in origins
        .split(' ')
        .zip(texts.split(|&b| b == b'\n'))
        .enumerate()
    {
        let number = |n: &str| n.parse::<u64>().ok();
        let (line, column) = match origin.split_once(':') {
            Some((l, c)) => (number(l), number(c).map(Some)),
            None => (number(origin), Some(None)),
        };
        let (Some(line), Some(column)) = (line, column) else {
            let origin: String = origin.chars().take(40).collect();
            return Err(format!(
                "the origin {origin:?} of its input {k} is not LINE or LINE:COLUMN"
            ));
        };
        inputs.push(Input {
            index: first + k as u64,
            line,
            column,
            text: text.to_vec(),
        });
    }
    Ok(inputs)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let inputs = vec![
            Input {
                index: 7,
                line: 9,
                column: Some(1),
                text: b"{\"a\": 1}".to_vec(),
            },
            Input {
                index: 8,
                line: 11,
                column: None,
                text: b"\"\"".to_vec(),
            },
        ];
        let fields = encode(&inputs)
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::BulkString(v)))
            .collect();
        assert_eq!(decode(&fields), Some(inputs));
    }

    fn fields(pairs: &[(&str, &[u8])]) -> std::collections::HashMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::BulkString(v.to_vec())))
            .collect()
    }

    #[test]
    fn foreign_entries_are_refused_saying_why() {
        let why = |pairs: &[(&str, &[u8])]| parse(&fields(pairs)).unwrap_err();
        assert!(why(&[("foo", b"bar")]).contains("no field `i`"));
        assert!(why(&[("i", b"-1"), ("o", b"1"), ("x", b"5")]).contains("not an input index"));
        assert!(why(&[("i", b"0"), ("o", b"1 2"), ("x", b"5")]).contains("names 2 inputs"));
        assert!(why(&[("i", b"0"), ("o", b"1:2:3"), ("x", b"5")]).contains("not LINE"));
        assert!(why(&[("i", b"0"), ("o", b""), ("x", b"")]).contains("not LINE"));
        assert!(why(&[("i", b"0"), ("o", b"\xff"), ("x", b"")]).contains("not UTF-8"));
        let max = u64::MAX.to_string();
        assert!(why(&[("i", max.as_bytes()), ("o", b"1 1"), ("x", b"5\n6")]).contains("pass 2^64"));
        let mut map = fields(&[("i", b"0"), ("o", b"1")]);
        map.insert("x".into(), Value::Int(5));
        assert!(parse(&map).unwrap_err().contains("`x` is not a string"));
        // The last index there is, alone: fine.
        let last = parse(&fields(&[("i", max.as_bytes()), ("o", b"1"), ("x", b"7")])).unwrap();
        assert_eq!(last[0].index, u64::MAX);
    }

    #[test]
    fn an_entry_of_more_inputs_than_a_batch_is_refused_before_they_are_made() {
        let n = MAX_INPUTS + 1;
        let origins = vec!["1"; n].join(" ");
        let texts = vec![b"1".as_slice(); n].join(&b'\n');
        let why = parse(&fields(&[
            ("i", b"0"),
            ("o", origins.as_bytes()),
            ("x", &texts),
        ]))
        .unwrap_err();
        assert!(why.contains("65537 inputs, more than the 65536"), "{why}");
        // The most a batch holds is fine.
        let origins = vec!["1"; MAX_INPUTS].join(" ");
        let texts = vec![b"1".as_slice(); MAX_INPUTS].join(&b'\n');
        let inputs = parse(&fields(&[
            ("i", b"0"),
            ("o", origins.as_bytes()),
            ("x", &texts),
        ]))
        .unwrap();
        assert_eq!(inputs.len(), MAX_INPUTS);
    }
}
