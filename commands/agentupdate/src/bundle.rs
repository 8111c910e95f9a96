//! A Guestward bundle: `<name>.wasm` components and their `.sig` files (each
//! signed for `<name>`), at the tarball's root or one directory deep.

use guestward_sdk::{log, update};

use crate::archive::{Kind, Member, depth, file_name};

/// One component of the bundle.
#[derive(Debug)]
pub struct Component<'a> {
    pub wasm: &'a Member,
    /// Absent for a pinned built-in, which needs none.
    pub signature: Option<&'a Member>,
}

/// The components of an unpacked tarball; an error if two share a name.
pub fn components(members: &[Member]) -> Result<Vec<Component<'_>>, String> {
    let mut components: Vec<Component<'_>> = Vec::new();
    for wasm in members.iter().filter(|member| is_component(member)) {
        if let Some(twin) = components
            .iter()
            .find(|seen| file_name(&seen.wasm.path) == file_name(&wasm.path))
        {
            return Err(format!("{} and {} are the same component", twin.wasm.path, wasm.path));
        }
        let signature_path = format!("{}.sig", wasm.path);
        let signature = members
            .iter()
            .find(|member| member.kind == Kind::File && member.path == signature_path);
        components.push(Component { wasm, signature });
    }
    Ok(components)
}

fn is_component(member: &Member) -> bool {
    member.kind == Kind::File && depth(&member.path) <= 1 && file_name(&member.path).ends_with(".wasm")
}

/// Hand the components to the daemon, which verifies and installs them all
/// or none.
pub fn install(components: Vec<Component<'_>>) -> Result<(), String> {
    let files: Vec<update::ComponentFile> = components
        .iter()
        .map(|component| update::ComponentFile {
            name: file_name(&component.wasm.path).to_owned(),
            wasm: component.wasm.contents.clone(),
            signature: component.signature.map(|sig| sig.contents.clone()).unwrap_or_default(),
        })
        .collect();
    let commands = update::install(&files).map_err(|error| format!("Update refused: {}", error.text()))?;
    log::log(
        log::Level::Info,
        &format!("update installed; commands now: {}", commands.join(",")),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::components;
    use crate::archive::{Kind, Member};

    fn file(path: &str) -> Member {
        Member {
            path: path.to_owned(),
            kind: Kind::File,
            mode: 0o644,
            contents: path.as_bytes().to_vec(),
        }
    }

    #[test]
    fn components_are_found_at_the_root_or_one_directory_deep() {
        let members = [
            file("a.wasm"),
            file("a.wasm.sig"),
            file("dir/b.wasm"),
            file("dir/deeper/c.wasm"),
            file("README"),
        ];
        let found = components(&members).unwrap();
        let names: Vec<_> = found.iter().map(|c| c.wasm.path.as_str()).collect();
        assert_eq!(names, ["a.wasm", "dir/b.wasm"]);
        assert_eq!(found[0].signature.unwrap().path, "a.wasm.sig");
        assert!(found[1].signature.is_none());
    }

    #[test]
    fn one_name_twice_is_refused() {
        let members = [file("a.wasm"), file("dir/a.wasm")];
        assert_eq!(
            components(&members).unwrap_err(),
            "a.wasm and dir/a.wasm are the same component"
        );
    }
}
