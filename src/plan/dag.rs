//! `proctor plan --dag`: a dependency graph (`proctor.plan.yaml`: the root
//! loop's keys at the top, `nodes:` with `depends_on`) turned into a native
//! manifest. Order becomes nesting (a node that exactly one other node
//! depends on becomes that node's child, so it closes first), independent
//! siblings get `parallel: true`, and the rest stand under the root in an
//! order that respects every dependency. The manifest has no runtime DAG
//! keys: the engine runs it as any tree. Pure: text in, text out.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

/// Why a graph cannot become a manifest (sent back to the drafter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("`proctor.plan.yaml` is not valid YAML: {0}")]
    Syntax(String),
    #[error("`proctor.plan.yaml`: {0}")]
    Shape(String),
    #[error(
        "`proctor.plan.yaml`: node `{node}` depends on `{missing}`, which is no node of the graph"
    )]
    UnknownNode { node: String, missing: String },
    #[error("`proctor.plan.yaml`: the dependencies form a cycle: {}", cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },
}

/// The manifest text for the graph `text`.
pub fn to_manifest(text: &str) -> Result<String, GraphError> {
    let doc: Value =
        serde_saphyr::from_str(text).map_err(|e| GraphError::Syntax(one_line(&e.to_string())))?;
    let Value::Object(mut root) = doc else {
        return Err(GraphError::Shape(
            "the top level must be a map: the root loop's keys and `nodes:`".into(),
        ));
    };
    if root.contains_key("loops") {
        return Err(GraphError::Shape(
            "list the loops under `nodes:` with `depends_on`, not under `loops:`".into(),
        ));
    }
    let nodes = match root.remove("nodes") {
        Some(Value::Array(nodes)) => nodes,
        Some(_) => return Err(GraphError::Shape("`nodes:` must be a list of loops".into())),
        None => return Err(GraphError::Shape("no `nodes:` list".into())),
    };
    let mut graph = Graph::default();
    for (i, node) in nodes.into_iter().enumerate() {
        let Value::Object(mut node) = node else {
            return Err(GraphError::Shape(format!("node {} is not a map", i + 1)));
        };
        let id = match node.get("loop") {
            Some(Value::String(id)) => id.clone(),
            _ => {
                return Err(GraphError::Shape(format!(
                    "node {} has no `loop:` id",
                    i + 1
                )))
            }
        };
        if node.contains_key("loops") {
            return Err(GraphError::Shape(format!(
                "node `{id}` has `loops:`; a node's order comes from `depends_on` only"
            )));
        }
        let deps = match node.remove("depends_on") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(dep)) => vec![dep],
            Some(Value::Array(deps)) => deps
                .into_iter()
                .map(|d| match d {
                    Value::String(d) => Ok(d),
                    _ => Err(GraphError::Shape(format!(
                        "node `{id}`: `depends_on` must list node ids"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(GraphError::Shape(format!(
                    "node `{id}`: `depends_on` must list node ids"
                )))
            }
        };
        if graph.index.contains_key(&id) {
            return Err(GraphError::Shape(format!("two nodes are called `{id}`")));
        }
        if root.get("loop").and_then(Value::as_str) == Some(id.as_str()) {
            return Err(GraphError::Shape(format!(
                "node `{id}` has the root loop's id"
            )));
        }
        graph.index.insert(id.clone(), graph.ids.len());
        graph.ids.push(id);
        graph.deps_named.push(deps);
        graph.bodies.push(node);
    }
    graph.resolve()?;
    let children = graph.top_level_order()?;
    let mut loops = Vec::new();
    let independent = graph.top_independent(&children);
    for &top in &children {
        loops.push(graph.loop_value(top));
    }
    if loops.len() >= 2 && independent {
        root.insert("parallel".into(), Value::Bool(true));
    }
    if !loops.is_empty() {
        root.insert("loops".into(), Value::Array(loops));
    }
    let yaml = serde_saphyr::to_string(&Value::Object(root))
        .map_err(|e| GraphError::Shape(one_line(&e.to_string())))?;
    Ok(format!(
        "# Made by `proctor plan --dag` from the graph in proctor.plan.yaml:\n\
         # a loop's children close before it; `parallel: true` children are independent.\n{yaml}"
    ))
}

#[derive(Default)]
struct Graph {
    ids: Vec<String>,
    index: HashMap<String, usize>,
    deps_named: Vec<Vec<String>>,
    bodies: Vec<Map<String, Value>>,
    /// Resolved: the nodes each node depends on.
    deps: Vec<Vec<usize>>,
    /// The one node that depends on a node, when exactly one does: its
    /// parent in the tree.
    parent: Vec<Option<usize>>,
}

impl Graph {
    fn resolve(&mut self) -> Result<(), GraphError> {
        for (i, named) in self.deps_named.iter().enumerate() {
            let mut deps = Vec::new();
            for dep in named {
                let Some(&j) = self.index.get(dep) else {
                    return Err(GraphError::UnknownNode {
                        node: self.ids[i].clone(),
                        missing: dep.clone(),
                    });
                };
                if !deps.contains(&j) {
                    deps.push(j);
                }
            }
            self.deps.push(deps);
        }
        if let Some(cycle) = self.cycle() {
            return Err(GraphError::Cycle {
                cycle: cycle.into_iter().map(|i| self.ids[i].clone()).collect(),
            });
        }
        let mut dependents = vec![Vec::new(); self.ids.len()];
        for (i, deps) in self.deps.iter().enumerate() {
            for &d in deps {
                dependents[d].push(i);
            }
        }
        self.parent = dependents
            .iter()
            .map(|ds| if ds.len() == 1 { Some(ds[0]) } else { None })
            .collect();
        Ok(())
    }

    /// A cycle, as the ids along it with the first repeated at the end.
    fn cycle(&self) -> Option<Vec<usize>> {
        // 0 unseen, 1 on the path, 2 done.
        let mut state = vec![0u8; self.ids.len()];
        let mut path = Vec::new();
        for start in 0..self.ids.len() {
            if let Some(c) = self.visit(start, &mut state, &mut path) {
                return Some(c);
            }
        }
        None
    }

    fn visit(&self, n: usize, state: &mut [u8], path: &mut Vec<usize>) -> Option<Vec<usize>> {
        match state[n] {
            2 => return None,
            1 => {
                let from = path.iter().position(|&p| p == n).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(n);
                return Some(cycle);
            }
            _ => {}
        }
        state[n] = 1;
        path.push(n);
        for &d in &self.deps[n] {
            if let Some(c) = self.visit(d, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state[n] = 2;
        None
    }

    /// The node at the top of `n`'s chain of parents.
    fn top_of(&self, mut n: usize) -> usize {
        // Parents form no cycle (the graph has none), so this ends.
        let mut steps = 0;
        while let Some(p) = self.parent[n] {
            n = p;
            steps += 1;
            if steps > self.ids.len() {
                break;
            }
        }
        n
    }

    /// The nodes `n`'s subtree (itself and every node nested under it).
    fn subtree(&self, n: usize) -> BTreeSet<usize> {
        (0..self.ids.len())
            .filter(|&i| self.top_within(i, n))
            .collect()
    }

    fn top_within(&self, mut i: usize, n: usize) -> bool {
        let mut steps = 0;
        loop {
            if i == n {
                return true;
            }
            match self.parent[i] {
                Some(p) if steps <= self.ids.len() => {
                    i = p;
                    steps += 1;
                }
                _ => return false,
            }
        }
    }

    /// The top-level nodes, each after the top-level nodes its subtree
    /// depends on (in the graph's order where free).
    fn top_level_order(&self) -> Result<Vec<usize>, GraphError> {
        let tops: Vec<usize> = (0..self.ids.len())
            .filter(|&i| self.parent[i].is_none())
            .collect();
        let needs = |t: usize| -> BTreeSet<usize> {
            let inside = self.subtree(t);
            inside
                .iter()
                .flat_map(|&n| self.deps[n].iter().copied())
                .filter(|d| !inside.contains(d))
                .map(|d| self.top_of(d))
                .collect()
        };
        let mut order = Vec::new();
        let mut placed = BTreeSet::new();
        while order.len() < tops.len() {
            let next = tops
                .iter()
                .copied()
                .find(|t| !placed.contains(t) && needs(*t).iter().all(|d| placed.contains(d)));
            let Some(next) = next else {
                // Collapsing subtrees cannot make a cycle the graph lacks;
                // said rather than looped on.
                return Err(GraphError::Shape(
                    "the graph cannot be ordered into a tree".into(),
                ));
            };
            placed.insert(next);
            order.push(next);
        }
        Ok(order)
    }

    /// Whether no top-level subtree depends on another.
    fn top_independent(&self, tops: &[usize]) -> bool {
        tops.iter().all(|&t| {
            let inside = self.subtree(t);
            inside
                .iter()
                .flat_map(|&n| self.deps[n].iter())
                .all(|d| inside.contains(d))
        })
    }

    /// Node `n` as a manifest loop, its children nested.
    fn loop_value(&self, n: usize) -> Value {
        let mut body = self.bodies[n].clone();
        let children: Vec<usize> = (0..self.ids.len())
            .filter(|&i| self.parent[i] == Some(n))
            .collect();
        if children.len() >= 2 {
            body.insert("parallel".into(), Value::Bool(true));
        }
        if !children.is_empty() {
            body.insert(
                "loops".into(),
                Value::Array(children.into_iter().map(|c| self.loop_value(c)).collect()),
            );
        }
        Value::Object(body)
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> crate::manifest::Manifest {
        let yaml = to_manifest(text).unwrap();
        crate::manifest::parse(&yaml, std::path::Path::new("proctor.proposed.yaml"))
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    const ROOT: &str = "loop: goal\ntask: reach the goal\ndone_when: sh exam.sh\n";

    #[test]
    fn a_chain_nests_and_independent_nodes_run_in_parallel() {
        let m = manifest(&format!(
            "{ROOT}nodes:\n\
             - {{loop: a, done_when: sh a.sh}}\n\
             - {{loop: b, done_when: sh b.sh}}\n\
             - {{loop: c, done_when: sh c.sh, depends_on: [a, b]}}\n\
             - {{loop: d, done_when: sh d.sh, depends_on: c}}\n"
        ));
        // d ← c ← {a, b}: c nests a and b (parallel), d nests c.
        assert_eq!(m.root.children.len(), 1);
        let d = &m.root.children[0];
        assert_eq!(d.id, "d");
        let c = &d.children[0];
        assert_eq!(c.id, "c");
        assert!(c.parallel);
        let ids: Vec<&str> = c.children.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(!m.root.parallel);
    }

    #[test]
    fn a_shared_dependency_stands_first_under_the_root() {
        // a is needed by b and c: it closes first, then b and c.
        let m = manifest(&format!(
            "{ROOT}nodes:\n\
             - {{loop: b, done_when: 'true', depends_on: [a]}}\n\
             - {{loop: c, done_when: 'true', depends_on: [a]}}\n\
             - {{loop: a, done_when: 'true'}}\n"
        ));
        let ids: Vec<&str> = m.root.children.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert!(!m.root.parallel, "b and c need a: the root is sequential");
    }

    #[test]
    fn independent_top_nodes_make_the_root_parallel() {
        let m = manifest(&format!(
            "{ROOT}nodes:\n- {{loop: a, done_when: 'true'}}\n- {{loop: b, done_when: 'true'}}\n"
        ));
        assert!(m.root.parallel);
        assert_eq!(m.root.children.len(), 2);
    }

    #[test]
    fn a_cycle_and_an_unknown_node_are_refused_by_name() {
        let cycle = to_manifest(&format!(
            "{ROOT}nodes:\n\
             - {{loop: a, done_when: 'true', depends_on: [c]}}\n\
             - {{loop: b, done_when: 'true', depends_on: [a]}}\n\
             - {{loop: c, done_when: 'true', depends_on: [b]}}\n"
        ))
        .unwrap_err();
        assert_eq!(
            cycle.to_string(),
            "`proctor.plan.yaml`: the dependencies form a cycle: a -> c -> b -> a"
        );
        let unknown = to_manifest(&format!(
            "{ROOT}nodes:\n- {{loop: a, done_when: 'true', depends_on: [zz]}}\n"
        ))
        .unwrap_err();
        assert_eq!(
            unknown,
            GraphError::UnknownNode {
                node: "a".into(),
                missing: "zz".into()
            }
        );
    }

    #[test]
    fn bad_shapes_are_named() {
        for (text, says) in [
            ("- a\n", "top level must be a map"),
            (ROOT, "no `nodes:`"),
            (
                &format!("{ROOT}nodes:\n- {{done_when: 'true'}}\n") as &str,
                "no `loop:` id",
            ),
            (
                &format!("{ROOT}nodes:\n- {{loop: a, done_when: 'true'}}\n- {{loop: a, done_when: 'true'}}\n"),
                "two nodes are called `a`",
            ),
            (": : :\n  - [", "not valid YAML"),
        ] {
            let e = to_manifest(text).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }
}
