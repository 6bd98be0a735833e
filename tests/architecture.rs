//! The shape of `src/`, checked from its text: no two files import each other (directly or round
//! a longer circle), no layer imports one above it in the order `src/lib.rs` records, and no
//! source file is over 600 lines (tests files aside).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

/// A module path under the crate root, e.g. `["model", "nn", "linear"]`.
type Module = Vec<String>;

struct Source {
    file: PathBuf,
    module: Module,
    text: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn is_tests_file(file: &Path) -> bool {
    file.file_name().is_some_and(|n| n == "tests.rs")
        || file.components().any(|c| c.as_os_str() == "tests")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a folder entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every library source file with its module path (`main.rs`, the binary, aside).
fn sources() -> Vec<Source> {
    let root = src();
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .filter(|f| f != &root.join("main.rs"))
        .map(|file| {
            let rel = file
                .strip_prefix(&root)
                .expect("under src")
                .with_extension("");
            let mut module: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            let text =
                fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            Source { file, module, text }
        })
        .collect()
}

/// The code of a file without comments and without its inline tests module (kept last in a
/// file by the project's convention).
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod tests {"))
        {
            break;
        }
        let line = line.find("//").map_or(line, |i| &line[..i]);
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `a::{b, c::{d, e}}` as `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let Some(open) = tree.find('{') else {
        return vec![tree.to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').expect("a closed group")];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(&format!("{prefix}{p}")))
        .collect()
}

/// The paths a file names from the crate: its `use` trees expanded, and the `crate::`/`super::`
/// paths written in its code.
fn paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = code[at..].find("use") {
        let begin = at + i;
        at = begin + 3;
        let starts = !code[..begin].chars().last().is_some_and(is_ident)
            && code[at..].starts_with(char::is_whitespace);
        if !starts {
            continue;
        }
        let Some(end) = code[at..].find(';') else {
            break;
        };
        let tree: String = code[at..at + end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if tree.starts_with("crate::") || tree.starts_with("super::") {
            found.extend(expand(&tree));
        }
    }
    for start in ["crate::", "super::"] {
        let mut at = 0;
        while let Some(i) = code[at..].find(start) {
            let begin = at + i;
            at = begin + start.len();
            if code[..begin]
                .chars()
                .last()
                .is_some_and(|c| is_ident(c) || c == ':')
            {
                continue;
            }
            let end = code[begin..]
                .find(|c: char| !(is_ident(c) || c == ':'))
                .map_or(code.len(), |e| begin + e);
            found.push(code[begin..end].trim_end_matches(':').to_string());
        }
    }
    found
}

/// The file a path leads into, from the file `from`: the longest module prefix that is a file.
fn resolve(path: &str, from: &Module, modules: &BTreeSet<Module>) -> Option<Module> {
    let mut segments = path.split("::").filter(|s| !s.is_empty()).peekable();
    let mut at: Module = match segments.peek().copied() {
        Some("crate") => {
            segments.next();
            Vec::new()
        }
        _ => from.clone(),
    };
    let mut full = Vec::new();
    for segment in segments {
        match segment {
            "super" if full.is_empty() => {
                at.pop();
            }
            "self" | "*" => {}
            s => full.push(s.split(" as ").next().unwrap_or(s).to_string()),
        }
    }
    let mut target = at;
    target.extend(full);
    (0..=target.len())
        .rev()
        .map(|n| target[..n].to_vec())
        .find(|m| modules.contains(m))
}

/// Which file imports which, leaving out a module's use of the files inside it.
fn imports(sources: &[Source]) -> BTreeMap<Module, BTreeSet<Module>> {
    let modules: BTreeSet<Module> = sources.iter().map(|s| s.module.clone()).collect();
    sources
        .iter()
        .filter(|s| !is_tests_file(&s.file))
        .map(|s| {
            let targets = paths(&code(&s.text))
                .iter()
                .filter_map(|p| resolve(p, &s.module, &modules))
                .filter(|t| !t.starts_with(&s.module))
                .collect();
            (s.module.clone(), targets)
        })
        .collect()
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "lib".into()
    } else {
        module.join("/")
    }
}

/// The circles of the graph: its strongly connected parts of more than one file (Tarjan).
fn circles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a Module) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut part = Vec::new();
                while let Some(w) = self.stack.pop() {
                    part.push(name(w));
                    if w == v {
                        break;
                    }
                }
                if part.len() > 1 {
                    part.sort();
                    self.found.push(part);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

/// The layers `src/lib.rs` records, lowest first: the backticked names of its `Layers` line(s),
/// `a`, `b` on one level, `→` between levels.
fn layers(lib: &str) -> BTreeMap<String, usize> {
    let doc: String = lib
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .skip_while(|l| !l.trim_start().starts_with("Layers"))
        .take_while(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let order = doc.split_once(':').map_or("", |(_, o)| o);
    let mut levels = BTreeMap::new();
    for (level, part) in order.split('→').enumerate() {
        for name in part.split('`').skip(1).step_by(2) {
            levels.insert(name.to_string(), level);
        }
    }
    levels
}

#[test]
fn no_two_files_import_each_other() {
    let found = circles(&imports(&sources()));
    assert!(found.is_empty(), "files that import each other: {found:?}");
}

#[test]
fn no_layer_imports_one_above_it() {
    let sources = sources();
    let lib = sources
        .iter()
        .find(|s| s.module.is_empty())
        .expect("src/lib.rs");
    let levels = layers(&lib.text);
    let declared: BTreeSet<&str> = lib
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    let recorded: BTreeSet<&str> = levels.keys().map(String::as_str).collect();
    assert_eq!(
        recorded, declared,
        "src/lib.rs's layers name every module it declares"
    );
    let mut wrong = Vec::new();
    for (from, targets) in imports(&sources) {
        let (Some(a), false) = (from.first(), from.is_empty()) else {
            continue;
        };
        for to in targets.iter().filter_map(|t| t.first()) {
            if let (Some(&la), Some(&lb)) = (levels.get(a), levels.get(to))
                && lb > la
            {
                wrong.push(format!("{} imports {to}", name(&from)));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports from a lower layer to a higher one: {wrong:?}"
    );
}

#[test]
fn no_source_file_is_over_600_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|s| !is_tests_file(&s.file))
        .map(|s| (s.file.clone(), s.text.lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(f, n)| format!("{} ({n} lines)", f.display()))
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

#[test]
fn the_checks_see_a_circle_a_climb_and_a_group() {
    let modules: BTreeSet<Module> = [vec!["a".to_string()], vec!["b".to_string()]]
        .into_iter()
        .collect();
    let from = vec!["a".to_string()];
    assert_eq!(
        expand("crate::{b::{X, Y}, a}"),
        ["crate::b::X", "crate::b::Y", "crate::a"]
    );
    assert_eq!(
        resolve("super::b::X", &from, &modules),
        Some(vec!["b".to_string()])
    );
    let graph: BTreeMap<Module, BTreeSet<Module>> = [
        (vec!["a".to_string()], [vec!["b".to_string()]].into()),
        (vec!["b".to_string()], [vec!["a".to_string()]].into()),
    ]
    .into();
    assert_eq!(circles(&graph), [["a", "b"]]);
    let levels = layers("//! Intro.\n//!\n//! Layers, lowest first: `x` → `y`, `z`.\n\npub mod x;");
    assert_eq!(levels["x"], 0);
    assert_eq!(levels["z"], 1);
    let code = code("use crate::b::X; // crate::c\n#[cfg(test)]\nmod tests {\n use crate::d;\n}\n");
    assert_eq!(paths(&code), ["crate::b::X", "crate::b::X"]);
}
