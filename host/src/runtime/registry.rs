//! Which component answers which command name.
//!
//! Two components may claim the same command name (a drop-in claiming
//! `version`, two vendors' commands). The daemon must not stop serving
//! over it, and the outcome must not depend on the order a directory is
//! read in, so claims are settled in a fixed order: pinned built-ins
//! first, then every other component by file name (byte order). A
//! component claiming a name an earlier one already answers is refused as a
//! whole (none of its names is routed to it), with an error log line.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::LoadedComponent;
use crate::trust::Provenance;

/// The loaded components and the names they answer.
#[derive(Debug, Default)]
pub struct Registry {
    components: Vec<Arc<LoadedComponent>>,
    routes: BTreeMap<String, Arc<LoadedComponent>>,
}

/// Two components claim one name.
#[derive(Debug, thiserror::Error)]
#[error("command '{name}' is claimed by both {first} and {second}: remove one of them")]
pub struct DuplicateName {
    pub name: String,
    pub first: String,
    pub second: String,
}

/// A component refused because it claims a name another one answers.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{refused} claims '{name}', which {holder} answers (built-ins win, then the first by file name): refused")]
pub struct Clash {
    pub name: String,
    /// The refused component's path.
    pub refused: String,
    /// The path of the component that keeps the name.
    pub holder: String,
}

impl Registry {
    /// Route every name of every component; a component claiming a name
    /// already taken is refused whole, with an error log line (see the
    /// module's doc for the order).
    pub fn build(components: Vec<LoadedComponent>) -> Self {
        let (registry, clashes) = Self::resolve(components);
        for clash in &clashes {
            tracing::error!(error = %clash, "refused command component");
        }
        registry
    }

    /// The registry of `components` and the clashes that kept some out.
    pub fn resolve(components: Vec<LoadedComponent>) -> (Self, Vec<Clash>) {
        let mut components: Vec<Arc<LoadedComponent>> = components.into_iter().map(Arc::new).collect();
        components.sort_by(|a, b| claim_order(a, b));
        let mut registry = Self::default();
        let mut clashes = Vec::new();
        for component in components {
            match registry.taken(&component) {
                Some((name, holder)) => clashes.push(Clash {
                    name,
                    refused: component.path.display().to_string(),
                    holder: holder.path.display().to_string(),
                }),
                None => registry.add(component),
            }
        }
        (registry, clashes)
    }

    /// This registry's components, those named like one of `replacements`
    /// replaced by it, and the other replacements added; an error if a
    /// replacement claims a name another component answers (an update is
    /// all or nothing).
    pub fn with_replaced(&self, replacements: Vec<LoadedComponent>) -> Result<Self, DuplicateName> {
        let mut components: Vec<Arc<LoadedComponent>> = self
            .components
            .iter()
            .filter(|old| !replacements.iter().any(|new| new.name == old.name))
            .cloned()
            .collect();
        components.extend(replacements.into_iter().map(Arc::new));
        components.sort_by(|a, b| claim_order(a, b));
        let mut registry = Self::default();
        for component in components {
            if let Some((name, holder)) = registry.taken(&component) {
                return Err(DuplicateName {
                    name,
                    first: holder.path.display().to_string(),
                    second: component.path.display().to_string(),
                });
            }
            registry.add(component);
        }
        Ok(registry)
    }

    /// The first name of `component` that another component answers, and
    /// that component.
    fn taken(&self, component: &Arc<LoadedComponent>) -> Option<(String, Arc<LoadedComponent>)> {
        component
            .info
            .names
            .iter()
            .find_map(|name| self.routes.get(name).map(|holder| (name.clone(), holder.clone())))
    }

    fn add(&mut self, component: Arc<LoadedComponent>) {
        for name in &component.info.names {
            self.routes.insert(name.clone(), component.clone());
        }
        self.components.push(component);
    }

    /// The component answering `name`.
    pub fn route(&self, name: &str) -> Option<&Arc<LoadedComponent>> {
        self.routes.get(name)
    }

    /// Every command name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.routes.keys().cloned().collect()
    }

    pub fn components(&self) -> &[Arc<LoadedComponent>] {
        &self.components
    }
}

/// Who gets a contested name first: pinned built-ins, then by file name.
fn claim_order(a: &LoadedComponent, b: &LoadedComponent) -> Ordering {
    let rank = |component: &LoadedComponent| match component.provenance {
        Some(Provenance::BuiltIn) => 0,
        _ => 1,
    };
    let file_name = |component: &LoadedComponent| component.path.file_name().map(|name| name.to_owned());
    rank(a).cmp(&rank(b)).then_with(|| file_name(a).cmp(&file_name(b)))
}
