//! The gateway's modules depend on each other one way: no module reaches back, through any
//! chain of `crate::` paths, to a module that depends on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module (a `src/*.rs` file or a `src/*/` directory) and the modules it names.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src");
            let module = relative
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .map(|name| name.trim_end_matches(".rs").to_owned())
                .expect("a module name");
            if module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source is UTF-8");
            let names = graph.entry(module.clone()).or_default();
            for named in named_modules(&text) {
                if named != module {
                    names.insert(named);
                }
            }
        }
    }
    graph
}

/// The first segment of every `crate::` path in `text`, grouped imports included.
fn named_modules(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        // `aiwatch_core::...` and the like end in `_crate::`? No: only bare `crate::`.
        if text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                names.push(first_segment(item.trim()));
            }
        } else {
            names.push(first_segment(rest));
        }
    }
    names.retain(|n| !n.is_empty() && n.chars().next().is_some_and(|c| c.is_lowercase()));
    names
}

fn first_segment(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn no_module_depends_on_itself_through_others() {
    let graph = module_graph();
    assert!(graph.contains_key("proxy") && graph.contains_key("policy"));
    // Depth-first search for a back edge, reporting the cycle it closes.
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            let mut cycle = path[start..].to_vec();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("an import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_failover_policy_is_pure() {
    let graph = module_graph();
    let policy = &graph["policy"];
    for io in [
        "proxy",
        "gateway",
        "upstream",
        "connector",
        "canary",
        "server",
        "app",
    ] {
        assert!(
            !policy.contains(io),
            "policy names `{io}`: it must not reach sockets or state"
        );
    }
}
