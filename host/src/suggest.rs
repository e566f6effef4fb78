//! "Did you mean": the nearest of some names to a misspelled one, for task
//! names and imports.

/// The candidate nearest to `name` by edit distance, if one is near enough
/// to be a likely typo: at most a third of the name's length (and at least
/// one) edits away. Ties go to the first candidate.
pub(crate) fn nearest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let most = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (edit_distance(name, c), c))
        .filter(|&(d, _)| d <= most)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// The Levenshtein distance between `a` and `b`, in characters: how many
/// insertions, deletions and substitutions turn one into the other.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // One row of the table at a time: `row[j]` is the distance between the
    // prefix of `a` seen so far and `b[..j]`.
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("queue_gett", "queue_get"), 1);
        assert_eq!(edit_distance("squar", "square"), 1);
        assert_eq!(edit_distance("öl", "ol"), 1);
    }

    #[test]
    fn nearest_suggests_only_likely_typos() {
        let tasks = ["square_i64", "square"];
        assert_eq!(nearest("squar", tasks), Some("square"));
        assert_eq!(nearest("sqaure", tasks), Some("square"));
        assert_eq!(nearest("cube", tasks), None);
        assert_eq!(
            nearest("square", tasks),
            None,
            "an exact name is no suggestion"
        );
        let imports = ["queue_open", "queue_get", "queue_put", "queue_len"];
        assert_eq!(nearest("queue_gett", imports), Some("queue_get"));
        assert_eq!(nearest("x", imports), None);
    }
}
