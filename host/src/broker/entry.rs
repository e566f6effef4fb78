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

/// The inputs of an entry's fields; `None` if they are not ours.
pub(crate) fn decode(fields: &std::collections::HashMap<String, Value>) -> Option<Vec<Input>> {
    let bytes = |name: &str| match fields.get(name)? {
        Value::BulkString(b) => Some(b.as_slice()),
        _ => None,
    };
    let first: u64 = std::str::from_utf8(bytes("i")?).ok()?.parse().ok()?;
    let origins = std::str::from_utf8(bytes("o")?).ok()?;
    let texts = bytes("x")?;
    let mut inputs = Vec::new();
    for (k, (origin, text)) in origins
        .split(' ')
        .zip(texts.split(|&b| b == b'\n'))
        .enumerate()
    {
        let (line, column) = match origin.split_once(':') {
            Some((l, c)) => (l.parse().ok()?, Some(c.parse().ok()?)),
            None => (origin.parse().ok()?, None),
        };
        inputs.push(Input {
            index: first.checked_add(k as u64)?,
            line,
            column,
            text: text.to_vec(),
        });
    }
    let count = origins.split(' ').count();
    (count == texts.split(|&b| b == b'\n').count()).then_some(inputs)
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
}
