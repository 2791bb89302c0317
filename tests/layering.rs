//! The architecture check of STYLE.md "Layers", run by `cargo test`: it reads every
//! `src/**/*.rs`, resolves every `crate::…`, `super::…`, `self::…` and imported path (grouped
//! `use crate::{a, b::{c, d}}`, aliases and paths written inline) to the file module it names,
//! and fails when
//! - (a) a module uses one of a higher layer (the layers are the table at the top of
//!   `src/lib.rs`; a module missing from it fails too);
//! - (b) a domain uses another domain's internals: anything but what that domain's `mod.rs`
//!   declares as its public API (items it defines or `pub use`s, and `pub mod`s documented
//!   `/// Public API: …`);
//! - (c) SQL (`sqlx::query…`, `query_as`, `query_scalar`, `QueryBuilder`) appears in a domain
//!   file other than a `store.rs` or an inline `mod store`;
//! - (d) file modules import each other in a cycle.
//!
//! Comments, string literals and `#[cfg(test)]` modules are not read. Known exceptions would be
//! listed in [`ALLOWED`]; there are none.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Edges allowed against the rules, `(from, to)` by top-level module.
const ALLOWED: &[(&str, &str)] = &[];

#[test]
fn the_crate_keeps_its_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_dir(&root, &root, &mut files);
    assert!(files.len() > 50, "read {} files", files.len());
    let problems = check(&files);
    assert!(problems.is_empty(), "architecture violations:\n  {}", problems.join("\n  "));
}

fn read_dir(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_dir(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            out.insert(rel, std::fs::read_to_string(&path).unwrap());
        }
    }
}

// ---- the checker

type ModPath = Vec<String>;

/// Every violation in `files` (paths relative to `src/`, e.g. `feed/ops.rs`).
fn check(files: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(lib) = files.get("lib.rs") else { return vec!["no lib.rs".into()] };
    let layers = layer_table(lib);
    if layers.is_empty() {
        return vec!["lib.rs: no layer table (`//! | <n> <name> | `module`, … |` lines)".into()];
    }
    let domains: BTreeSet<String> =
        layers.iter().filter(|(_, (_, name))| name == "domains").map(|(m, _)| m.clone()).collect();

    // File modules.
    let mut modules: BTreeMap<ModPath, &str> = BTreeMap::new();
    let mut paths: BTreeMap<ModPath, &str> = BTreeMap::new();
    for (rel, text) in files {
        if rel == "main.rs" || rel == "lib.rs" {
            continue;
        }
        modules.insert(module_of(rel), text);
        paths.insert(module_of(rel), rel);
    }
    let file_of = |m: &ModPath| format!("src/{}", paths[m]);
    for m in modules.keys() {
        if !layers.contains_key(&m[0]) {
            problems.push(format!("{}: module `{}` is not in the layer table of src/lib.rs", file_of(m), m[0]));
        }
    }
    let apis: BTreeMap<String, BTreeSet<String>> =
        domains.iter().filter_map(|d| modules.get(&vec![d.clone()]).map(|t| (d.clone(), public_api(t)))).collect();
    let layer_of = |m: &ModPath| -> Option<usize> {
        if m.len() >= 2 && m[1] == "config" && domains.contains(&m[0]) {
            return layers.get("config").map(|l| l.0);
        }
        layers.get(&m[0]).map(|l| l.0)
    };

    let mut edges: BTreeSet<(ModPath, ModPath)> = BTreeSet::new();
    for (module, text) in &modules {
        let file = file_of(module);
        let src = strip(text);
        let src = blank_test_modules(&src);
        let inline = inline_modules(&src);
        for (offset, path) in references(&src, module, &inline, &modules) {
            let line = src[..offset].matches('\n').count() + 1;
            let Some(target) = longest_module(&path, &modules) else { continue };
            if &target == module {
                continue;
            }
            let (from, to) = (&module[0], &target[0]);
            let allowed = ALLOWED.iter().any(|(f, t)| f == from && t == to);
            if !allowed {
                edges.insert((module.clone(), target.clone()));
            }
            if from == to || allowed {
                continue;
            }
            // (a) layers
            if let (Some(lf), Some(lt)) = (layer_of(module), layer_of(&target))
                && lt > lf
            {
                problems.push(format!(
                    "{file}:{line}: `{}` (layer {lf}) uses `{}` (layer {lt}), a higher layer",
                    module.join("::"),
                    path.join("::")
                ));
            }
            // (b) another domain's internals
            if domains.contains(from) && domains.contains(to) && path.len() > 1 {
                let api = apis.get(to.as_str());
                if !api.is_some_and(|a| a.contains(&path[1])) {
                    problems.push(format!(
                        "{file}:{line}: `{}` uses `{}`, which is not in the public API of `{to}` (its mod.rs)",
                        module.join("::"),
                        path.join("::")
                    ));
                }
            }
        }
        // (c) SQL outside the store
        if domains.contains(&module[0]) && module.last().is_none_or(|l| l != "store") {
            for (offset, token) in sql_calls(&src) {
                let in_store = inline.iter().any(|m| m.name == "store" && m.start <= offset && offset < m.end);
                if !in_store {
                    let line = src[..offset].matches('\n').count() + 1;
                    problems.push(format!("{file}:{line}: SQL (`{token}`) outside a store"));
                }
            }
        }
    }
    // (d) cycles
    for cycle in cycles(&edges) {
        let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
        problems.push(format!("import cycle between {}", names.join(", ")));
    }
    problems
}

/// `module → (layer, layer name)` from the `//! | <n> <name> | `a`, `b` |` rows of lib.rs.
fn layer_table(lib: &str) -> BTreeMap<String, (usize, String)> {
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! |") else { continue };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Some((n, name)) = cells.first().and_then(|c| c.split_once(' ')) else { continue };
        let Ok(n) = n.parse::<usize>() else { continue };
        let Some(members) = cells.get(1) else { continue };
        for m in members.split('`').skip(1).step_by(2) {
            if !m.contains(' ') && !m.contains("::") {
                out.insert(m.to_owned(), (n, name.trim().to_owned()));
            }
        }
    }
    out
}

fn module_of(rel: &str) -> ModPath {
    let rel = rel.trim_end_matches(".rs");
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts
}

/// What a domain's mod.rs offers other domains: items it defines or re-exports, and submodules
/// documented as public API.
fn public_api(mod_rs: &str) -> BTreeSet<String> {
    let mut api = BTreeSet::new();
    let mut doc_says_api = false;
    for line in mod_rs.lines() {
        let l = line.trim();
        if l.starts_with("///") {
            doc_says_api |= l.trim_start_matches('/').trim().starts_with("Public API");
            continue;
        }
        if let Some(rest) = l.strip_prefix("pub mod ") {
            if doc_says_api {
                api.insert(ident(rest));
            }
        } else if l.starts_with("pub use ") {
            // Handled below (a use may span lines).
        } else {
            for kw in [
                "pub fn ",
                "pub async fn ",
                "pub struct ",
                "pub enum ",
                "pub trait ",
                "pub type ",
                "pub const ",
                "pub static ",
            ] {
                if let Some(rest) = l.strip_prefix(kw) {
                    api.insert(ident(rest));
                }
            }
        }
        doc_says_api = false;
    }
    let src = strip(mod_rs);
    for (at, _) in src.match_indices("pub use ") {
        let Some(end) = src[at..].find(';') else { continue };
        for (path, alias) in use_tree(&[], &src[at + 8..at + end]) {
            if let Some(name) = alias.filter(|a| a != "*").or_else(|| path.last().cloned()) {
                api.insert(name);
            }
        }
    }
    api
}

fn ident(s: &str) -> String {
    s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// `text` with comments, string and character literals replaced by spaces (newlines kept).
fn strip(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !is_ident_char(b.get(i.wrapping_sub(1))) {
            // Raw string r"…" / r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.extend(b[i..j.min(b.len())].iter().map(|c| blank(*c)));
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (b.get(i + 2) == Some(&'\'') || (next == Some('\\'))) {
            // A character literal (a lifetime has no closing quote).
            let mut j = i + 1;
            if b.get(j) == Some(&'\\') {
                j += 2;
            }
            while j < b.len() && b[j] != '\'' {
                j += 1;
            }
            for _ in i..=j.min(b.len() - 1) {
                out.push(' ');
            }
            i = j + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident_char(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

/// The byte range of the block that opens at the first `{` at or after `from`.
fn block(src: &str, from: usize) -> Option<(usize, usize)> {
    let open = from + src[from..].find('{')?;
    let mut depth = 0;
    for (k, ch) in src[open..].char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((open, open + k + 1));
                }
            }
            _ => {}
        }
    }
    None
}

/// `src` with every `#[cfg(test)] mod … { … }` blanked.
fn blank_test_modules(src: &str) -> String {
    let mut out = src.to_owned();
    let mut from = 0;
    while let Some(at) = out[from..].find("#[cfg(test)]") {
        let at = from + at;
        let after = out[at + 12..].trim_start();
        let is_mod = ["mod ", "pub mod ", "pub(crate) mod "].iter().any(|m| after.starts_with(m));
        if is_mod && let Some((_, end)) = block(&out, at) {
            let blanked: String = out[at..end].chars().map(|c| if c == '\n' { '\n' } else { ' ' }).collect();
            out.replace_range(at..end, &blanked);
            // The blanked text may be shorter (multi-byte characters became one space).
            from = at + blanked.len();
            continue;
        }
        from = at + 12;
    }
    out
}

struct Inline {
    name: String,
    start: usize,
    end: usize,
}

/// Inline `mod name { … }` blocks.
fn inline_modules(src: &str) -> Vec<Inline> {
    let mut out = Vec::new();
    for (at, _) in src.match_indices("mod ") {
        if is_ident_char(src[..at].chars().last().as_ref()) {
            continue;
        }
        let rest = &src[at + 4..];
        let name = ident(rest.trim_start());
        let after = rest.trim_start()[name.len()..].trim_start();
        if name.is_empty() || !after.starts_with('{') {
            continue;
        }
        if let Some((start, end)) = block(src, at) {
            out.push(Inline { name, start, end });
        }
    }
    out
}

/// Parses a use tree: `(path, alias)` for each leaf (`self` leaves name the prefix).
fn use_tree(prefix: &[String], tree: &str) -> Vec<(ModPath, Option<String>)> {
    let tree = tree.trim();
    if let Some(open) = top_level_brace(tree) {
        let head: Vec<String> = split_path(tree[..open].trim_end_matches("::"));
        let mut base = prefix.to_vec();
        base.extend(head);
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        return split_top_level(inner).into_iter().flat_map(|part| use_tree(&base, part)).collect();
    }
    let (path, alias) = match tree.split_once(" as ") {
        Some((p, a)) => (p.trim(), Some(a.trim().to_owned())),
        None => (tree, None),
    };
    let mut full = prefix.to_vec();
    full.extend(split_path(path));
    if full.last().is_some_and(|l| l == "self") {
        full.pop();
    }
    if full.last().is_some_and(|l| l == "*") {
        full.pop();
        return vec![(full, Some("*".into()))];
    }
    vec![(full, alias)]
}

fn top_level_brace(s: &str) -> Option<usize> {
    s.find('{')
}

fn split_top_level(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0, 0, Vec::new());
    for (k, ch) in s.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

fn split_path(s: &str) -> Vec<String> {
    s.split("::").map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect()
}

/// Every path the file names, resolved to absolute module paths, with its offset.
fn references(
    src: &str,
    module: &ModPath,
    inline: &[Inline],
    modules: &BTreeMap<ModPath, &str>,
) -> Vec<(usize, ModPath)> {
    let scope_at = |offset: usize| -> ModPath {
        let mut m = module.clone();
        let mut enclosing: Vec<&Inline> = inline.iter().filter(|i| i.start <= offset && offset < i.end).collect();
        enclosing.sort_by_key(|i| i.start);
        m.extend(enclosing.iter().map(|i| i.name.clone()));
        m
    };
    // `use` declarations: their leaves and the local names they bring in.
    let mut uses: Vec<(usize, ModPath)> = Vec::new();
    let mut aliases: BTreeMap<String, ModPath> = BTreeMap::new();
    for (at, _) in src.match_indices("use ") {
        if is_ident_char(src[..at].chars().last().as_ref()) {
            continue;
        }
        let Some(end) = src[at..].find(';') else { continue };
        let tree = &src[at + 4..at + end];
        let scope = scope_at(at);
        for (path, alias) in use_tree(&[], tree) {
            let Some(abs) = resolve(&path, &scope, modules, &BTreeMap::new()) else { continue };
            match alias {
                Some(a) if a == "*" => {}
                Some(a) => {
                    aliases.insert(a, abs.clone());
                }
                None => {
                    if let Some(last) = abs.last() {
                        aliases.insert(last.clone(), abs.clone());
                    }
                }
            }
            uses.push((at, abs));
        }
    }
    // Paths written inline: `a::b::c` sequences outside `use` declarations.
    let mut out = uses;
    let bytes = src.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        let starts =
            (c.is_ascii_alphabetic() || c == '_') && (i == 0 || !is_ident_char(src[..i].chars().last().as_ref()));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut segments = Vec::new();
        loop {
            let start = j;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                j += 1;
            }
            if start == j {
                break;
            }
            segments.push(src[start..j].to_owned());
            if src[j..].starts_with("::") && src[j + 2..].starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_')
            {
                j += 2;
            } else {
                break;
            }
        }
        if segments.len() >= 2 && !is_in_use(src, i) {
            let scope = scope_at(i);
            if let Some(abs) = resolve(&segments, &scope, modules, &aliases) {
                out.push((i, abs));
            }
        }
        i = j.max(i + 1);
    }
    out
}

fn is_in_use(src: &str, at: usize) -> bool {
    let line_start = src[..at].rfind(['\n', ';', '{', '}']).map_or(0, |p| p + 1);
    let before = &src[line_start..at];
    // Inside `use …;`: the statement starts with `use` (maybe `pub use`) and has not ended.
    let stmt_start = src[..at].rfind(';').map_or(0, |p| p + 1);
    let stmt = src[stmt_start..at].trim_start();
    let stmt = stmt.trim_start_matches("pub(crate) ").trim_start_matches("pub ");
    stmt.starts_with("use ") || before.trim_start().starts_with("use ")
}

/// An absolute module path for `path` as written in `scope`, or `None` (external crate, local
/// name).
fn resolve(
    path: &[String],
    scope: &ModPath,
    modules: &BTreeMap<ModPath, &str>,
    aliases: &BTreeMap<String, ModPath>,
) -> Option<ModPath> {
    let first = path.first()?;
    let mut base: ModPath;
    let mut rest = &path[1..];
    match first.as_str() {
        "crate" => base = Vec::new(),
        "self" => base = scope.clone(),
        "super" => {
            base = scope.clone();
            base.pop();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        name => {
            let mut child = scope.clone();
            child.push(name.to_owned());
            if modules.contains_key(&child) {
                base = child;
            } else if let Some(target) = aliases.get(name) {
                base = target.clone();
            } else {
                return None;
            }
        }
    }
    base.extend(rest.iter().cloned());
    (!base.is_empty()).then_some(base)
}

fn longest_module(path: &ModPath, modules: &BTreeMap<ModPath, &str>) -> Option<ModPath> {
    (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains_key(p))
}

/// Calls that run SQL: `(offset, token)`.
fn sql_calls(src: &str) -> Vec<(usize, &'static str)> {
    let mut out = Vec::new();
    for token in ["sqlx::query", "query_as", "query_scalar", "QueryBuilder"] {
        for (at, _) in src.match_indices(token) {
            let before_ok =
                !is_ident_char(src[..at].chars().last().as_ref()) || token == "query_as" || token == "query_scalar";
            let after = src[at + token.len()..].chars().next();
            let is_call_or_type = matches!(after, Some('(' | ':' | '<' | '_')) || token == "QueryBuilder";
            // `sqlx::query_as` is found once, as `sqlx::query`.
            let counted = token.starts_with("query_") && src[..at].ends_with("sqlx::");
            if before_ok && is_call_or_type && !counted {
                out.push((at, token));
            }
        }
    }
    out.sort_unstable();
    out.dedup_by_key(|(at, _)| *at);
    out
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(edges: &BTreeSet<(ModPath, ModPath)>) -> Vec<Vec<ModPath>> {
    let mut graph: BTreeMap<&ModPath, Vec<&ModPath>> = BTreeMap::new();
    for (a, b) in edges {
        graph.entry(a).or_default().push(b);
        graph.entry(b).or_default();
    }
    struct T<'a> {
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        on_stack: BTreeSet<&'a ModPath>,
        stack: Vec<&'a ModPath>,
        next: usize,
        out: Vec<Vec<ModPath>>,
    }
    fn visit<'a>(v: &'a ModPath, g: &BTreeMap<&'a ModPath, Vec<&'a ModPath>>, t: &mut T<'a>) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on_stack.insert(v);
        for w in &g[v] {
            if !t.index.contains_key(*w) {
                visit(w, g, t);
                let lw = t.low[*w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on_stack.contains(*w) {
                let iw = t.index[*w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut component = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                t.out.push(component);
            }
        }
    }
    let mut t = T {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on_stack: BTreeSet::new(),
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    let nodes: Vec<&ModPath> = graph.keys().copied().collect();
    for v in nodes {
        if !t.index.contains_key(v) {
            visit(v, &graph, &mut t);
        }
    }
    t.out
}

// ---- the checker's own rules, on synthetic crates

const LIB: &str = "//! | 3 binary | `cli` |
//! | 2 domains | `feed`, `accounts` |
//! | 1 platform | `db`, `cache` |
//! | 0 primitives | `error`, `config` |
pub mod cli;
";

fn crate_of(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = files.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect();
    m.insert("lib.rs".into(), LIB.into());
    for base in ["cli.rs", "db.rs", "cache.rs", "error.rs", "config.rs", "feed/mod.rs", "feed/store.rs", "feed/ops.rs"]
    {
        m.entry(base.into()).or_default();
    }
    m.entry("accounts/mod.rs".into())
        .or_insert_with(|| "pub mod model;\npub mod store;\npub use model::Handle;\npub fn list() {}\n".into());
    m.entry("accounts/model.rs".into()).or_default();
    m.entry("accounts/store.rs".into()).or_default();
    m
}

fn problems(files: &[(&str, &str)]) -> Vec<String> {
    check(&crate_of(files))
}

#[test]
fn a_clean_synthetic_crate_passes() {
    let p = problems(&[
        ("feed/ops.rs", "use super::store;\nuse crate::accounts::{self, Handle};\nfn f() { accounts::list(); }\n"),
        ("feed/store.rs", "use crate::db;\nfn q() { sqlx::query(\"select 1\"); }\n"),
        ("cli.rs", "use crate::feed::ops;\n"),
        // Comments and strings name nothing; test modules are not checked.
        (
            "db.rs",
            "// use crate::feed::ops;\nconst S: &str = \"crate::cli::x\";\n#[cfg(test)]\nmod tests { use crate::cli; }\n",
        ),
    ]);
    assert!(p.is_empty(), "{p:#?}");
}

#[test]
fn a_lower_layer_using_a_higher_one_is_caught_however_written() {
    for (file, text) in [
        ("db.rs", "use crate::feed::store::list;\n"),
        ("cache.rs", "use crate::{error::AppError, feed::{ops, store}};\n"),
        ("error.rs", "fn f() { let _ = crate::cache::get(); }\n"),
        ("config.rs", "use crate::db as database;\nfn f() { database::pool(); }\n"),
        ("feed/ops.rs", "fn f() { crate::cli::run(); }\n"),
    ] {
        let p = problems(&[(file, text)]);
        assert!(p.iter().any(|e| e.contains("a higher layer")), "{file}: {text}\n{p:#?}");
    }
}

#[test]
fn another_domains_internals_are_caught_through_aliases_too() {
    for text in [
        "use crate::accounts::store;\n",
        "use crate::accounts::model::Handle;\n",
        "use crate::accounts;\nfn f() { accounts::store::insert(); }\n",
        "use crate::{accounts::{store as s}};\n",
    ] {
        let p = problems(&[("feed/ops.rs", text)]);
        assert!(p.iter().any(|e| e.contains("not in the public API of `accounts`")), "{text}\n{p:#?}");
    }
    // What mod.rs re-exports or defines, and modules it documents as public API, are fine.
    let api = "/// Public API: the rules.\npub mod model;\npub mod store;\npub use store::insert;\n";
    let p = problems(&[
        ("accounts/mod.rs", api),
        ("feed/ops.rs", "use crate::accounts::model::Handle;\nuse crate::accounts::insert;\n"),
    ]);
    assert!(p.is_empty(), "{p:#?}");
}

#[test]
fn sql_outside_a_store_is_caught() {
    for text in [
        "fn f() { sqlx::query(\"x\"); }\n",
        "fn f() { let r: (i64,) = sqlx::query_as(\"x\"); }\n",
        "use sqlx::query_scalar;\nfn f() { query_scalar(\"x\"); }\n",
        "fn f() { let b = sqlx::QueryBuilder::new(\"x\"); }\n",
    ] {
        let p = problems(&[("feed/ops.rs", text)]);
        assert!(p.iter().any(|e| e.contains("SQL")), "{text}\n{p:#?}");
    }
    let p = problems(&[("feed/ops.rs", "mod store {\n    fn f() { sqlx::query(\"x\"); }\n}\n")]);
    assert!(p.is_empty(), "an inline store module: {p:#?}");
}

#[test]
fn cycles_are_caught() {
    let p = problems(&[
        ("feed/ops.rs", "use super::cache::get;\n"),
        ("feed/cache.rs", "fn f() { super::ops::list(); }\n"),
        ("feed/mod.rs", "pub mod cache;\npub mod ops;\n"),
    ]);
    assert!(p.iter().any(|e| e.contains("import cycle between feed::cache, feed::ops")), "{p:#?}");
}

#[test]
fn modules_missing_from_the_layer_table_are_caught() {
    let p = problems(&[("newthing.rs", "")]);
    assert!(p.iter().any(|e| e.contains("`newthing` is not in the layer table")), "{p:#?}");
}

#[test]
fn config_may_not_use_grpc() {
    // The one exception there once was (rate-limit method names) is gone: config is a primitive.
    let p = problems(&[("config.rs", "use crate::db::methods;\n")]);
    assert!(p.iter().any(|e| e.contains("`config`") && e.contains("a higher layer")), "{p:#?}");
}
