//! Which component answers which command name.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::LoadedComponent;

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

impl Registry {
    /// Route every name of every component; a name claimed twice is an error.
    pub fn build(components: Vec<LoadedComponent>) -> Result<Self, DuplicateName> {
        Self::from_shared(components.into_iter().map(Arc::new).collect())
    }

    /// This registry's components, those named like one of `replacements`
    /// replaced by it, and the other replacements added.
    pub fn with_replaced(&self, replacements: Vec<LoadedComponent>) -> Result<Self, DuplicateName> {
        let mut components: Vec<Arc<LoadedComponent>> = self
            .components
            .iter()
            .filter(|old| !replacements.iter().any(|new| new.name == old.name))
            .cloned()
            .collect();
        components.extend(replacements.into_iter().map(Arc::new));
        Self::from_shared(components)
    }

    fn from_shared(components: Vec<Arc<LoadedComponent>>) -> Result<Self, DuplicateName> {
        let mut routes: BTreeMap<String, Arc<LoadedComponent>> = BTreeMap::new();
        for component in &components {
            for name in &component.info.names {
                if let Some(first) = routes.get(name) {
                    return Err(DuplicateName {
                        name: name.clone(),
                        first: first.path.display().to_string(),
                        second: component.path.display().to_string(),
                    });
                }
                routes.insert(name.clone(), component.clone());
            }
        }
        Ok(Self { components, routes })
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
