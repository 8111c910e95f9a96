# Guestward: build, run, test, bench, install.
#
#   make run     build everything and start the agent on a local socket,
#                acting on a scratch root under target/run (safe anywhere)
#   make test    install what is missing, build, lint and run every test
#   make bench   every performance figure beside its peer (qemu-ga)
#   make install install the agent, its commands, unit, docs, man pages and
#                completions under PREFIX (/usr), into DESTDIR if set

CARGO        ?= cargo
WASM_TARGET  := wasm32-wasip2
WASM_PROFILE := wasm
WASM_DIR     := target/$(WASM_TARGET)/$(WASM_PROFILE)
# The built-in components, by themselves: the host pins their hashes when it
# is built (host/build.rs), and finds them next to its binary.
BUILTIN_DIR  := target/builtin-commands
# Built-in command components, and the components only the tests load.
COMMANDS      := version features password injectfile kmsactivate agentupdate resetnetwork qga sshkeys shutdown fsfreeze
TEST_COMMANDS := probe impostor squatter compat freezer
# What the tests run against: the real xenstored and its tools, gcc for the
# harness's LD_PRELOAD shim, Debian's python3 (fcntl locks, libxcrypt's crypt)
# and openssl (the host side of the password exchange, as Nova runs it), and
# the network daemons resetnetwork's files are brought up by, in network
# namespaces of the tests' own (systemd-networkd from systemd,
# NetworkManager, ifupdown, netplan, D-Bus for NetworkManager, iproute2),
# debootstrap for the Debian root the package is installed into, Debian's
# qemu-ga (the QGA tests compare answers with it) and e2fsprogs (the
# file systems the freeze tests freeze).
# They are installed without being started (a policy-rc.d that says no,
# while apt runs): the tests start private copies, never the host's.
APT_PACKAGES := xen-utils-4.17 xenstore-utils gcc python3 openssl ifupdown netplan.io \
                systemd network-manager dbus iproute2 debootstrap qemu-guest-agent e2fsprogs
XENSTORED    := /usr/lib/xen-4.17/bin/xenstored
# The QGA peer the tests and the benchmarks compare with, on a unix socket.
QEMU_GA      := /usr/sbin/qemu-ga

PREFIX   ?= /usr
SBINDIR  ?= $(PREFIX)/sbin
LIBDIR   ?= $(PREFIX)/lib/guestward
DATADIR  ?= $(PREFIX)/share
DOCDIR   ?= $(DATADIR)/doc/guestward
MANDIR   ?= $(DATADIR)/man
UNITDIR  ?= $(PREFIX)/lib/systemd/system
SYSCONF  ?= /etc/guestward
CACHEDIR ?= /var/cache/guestward
# The binary `install-files` installs (the tests install the debug one).
INSTALL_BIN ?= target/release/guestward

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build components test-components run test lint bench fuzz fuzz-smoke install install-files deb deb-files clean \
        setup-rust setup-test setup-bench examples

# Fuzz targets (host/fuzz): FUZZ_SECONDS each, with nightly and cargo-fuzz;
# then `guestward fuzz` of every built-in command for FUZZ_SECONDS each.
FUZZ_TARGETS := xenstore_frames nova_request qga_stream policy network_config builtin_commands
FUZZ_SECONDS ?= 60
# `make test`'s fuzz smoke: this many runs of each built-in command, with a
# fixed seed (a CI failure replays as it happened).
FUZZ_SMOKE_RUNS ?= 1000
FUZZ_CORPUS  := tests/fuzz-corpus

all: build

## Set-up: what a fresh Debian machine lacks.
setup-rust:
	@rustup target list --installed 2>/dev/null | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

setup-test: setup-rust
	@missing=""; \
	[ -x $(XENSTORED) ] || missing="$$missing xen-utils-4.17"; \
	command -v xenstore-read >/dev/null || missing="$$missing xenstore-utils"; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	[ -x /usr/bin/python3 ] || missing="$$missing python3"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	[ -x /sbin/ifup ] || missing="$$missing ifupdown"; \
	[ -x /usr/sbin/netplan ] || missing="$$missing netplan.io"; \
	[ -x /lib/systemd/systemd-networkd ] || missing="$$missing systemd"; \
	[ -x /usr/sbin/NetworkManager ] || missing="$$missing network-manager"; \
	command -v dbus-daemon >/dev/null || missing="$$missing dbus"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	[ -x /usr/sbin/debootstrap ] || missing="$$missing debootstrap"; \
	[ -x $(QEMU_GA) ] || missing="$$missing qemu-guest-agent"; \
	command -v mkfs.ext4 >/dev/null || missing="$$missing e2fsprogs"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) sh -c 'own=; if [ ! -e /usr/sbin/policy-rc.d ]; then own=1; \
	    printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; fi; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); status=$$?; \
	    [ -z "$$own" ] || rm -f /usr/sbin/policy-rc.d; exit $$status'; \
	fi

## Components (wasm32-wasip2) and the host.
components: setup-rust
	$(CARGO) build --profile $(WASM_PROFILE) --target $(WASM_TARGET) $(addprefix -p ,$(COMMANDS))
	@mkdir -p $(BUILTIN_DIR)
	@# Copy only what changed: host/build.rs pins these, and a fresh mtime
	@# alone would make cargo rebuild the host on every make.
	@for name in $(COMMANDS); do \
	  cmp -s $(WASM_DIR)/$$name.wasm $(BUILTIN_DIR)/$$name.wasm || cp $(WASM_DIR)/$$name.wasm $(BUILTIN_DIR)/; \
	done

test-components: components
	$(CARGO) build --profile $(WASM_PROFILE) --target $(WASM_TARGET) $(addprefix -p ,$(TEST_COMMANDS))

# The binary finds its built-in commands in `commands/` next to it, and pins
# their hashes (.cargo/config.toml points host/build.rs at BUILTIN_DIR).
build: components
	$(CARGO) build --release -p guestward
	rm -rf target/release/commands && cp -r $(BUILTIN_DIR) target/release/commands

run: build
	@mkdir -p target/run/root
	@[ -f target/run/interfaces.json ] || echo '[{"name": "eth0", "mac": "52:54:00:12:34:56", "up": true}]' > target/run/interfaces.json
	@echo "guestward: serving the local socket target/run/guestward.sock, acting on target/run/root"
	@echo "talk to it from another shell:  target/release/guestward call --socket target/run/guestward.sock version"
	@echo "stop it with Ctrl-C"
	target/release/guestward serve --root target/run/root --interfaces target/run/interfaces.json \
	  --socket target/run/guestward.sock --cache target/run/cache

## Tests: unit tests next to the code, end-to-end tests in tests/ against a
## real xenstored.
test: setup-test test-components lint examples
	$(CARGO) build -p guestward
	rm -rf target/debug/commands && cp -r $(BUILTIN_DIR) target/debug/commands
	$(CARGO) test --workspace
	$(MAKE) fuzz-smoke GUESTWARD=target/debug/guestward

# Every built-in command in the real sandbox, under the built-in policy;
# reproducers of anything found go to target/fuzz-findings/NAME.
GUESTWARD ?= target/release/guestward
FUZZ_SEED  ?= 0
FUZZ_BUDGET ?= --runs $(FUZZ_SMOKE_RUNS)
# The built-in policy plus the drop-ins that turn on what it leaves off
# (fsfreeze): those commands are fuzzed too, on the scratch root, where
# freezing is simulated.
FUZZ_POLICY := target/fuzz-policy.toml
fuzz-smoke:
	rm -rf target/fuzz-findings
	@mkdir -p target && cat host/src/policy/default.toml dist/policy.d/*.toml > $(FUZZ_POLICY)
	@for name in $(COMMANDS); do \
	  echo "fuzz $$name ($(FUZZ_BUDGET), seed $(FUZZ_SEED))"; \
	  $(GUESTWARD) fuzz $(BUILTIN_DIR)/$$name.wasm $(FUZZ_BUDGET) --seed $(FUZZ_SEED) \
	    --policy $(FUZZ_POLICY) --corpus $(FUZZ_CORPUS)/$$name \
	    --findings target/fuzz-findings/$$name || exit 1; \
	done

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@# The SDK must build from its package alone (its WIT inside it).
	$(CARGO) package -p guestward-sdk --allow-dirty --quiet

# Third-party commands made with `guestward new`, each a crate of its own
# outside the workspace: tested natively, built as components. Their target
# directory is the one the authors' e2e test builds in, so the SDK's
# dependencies are compiled once for both.
EXAMPLES       := examples/sysreport
AUTHORS_TARGET := $(CURDIR)/target/authors

examples: setup-rust
	@for example in $(EXAMPLES); do \
	  echo "example $$example"; \
	  (cd $$example && CARGO_TARGET_DIR=$(AUTHORS_TARGET) $(CARGO) test --locked --quiet && \
	   CARGO_TARGET_DIR=$(AUTHORS_TARGET) $(CARGO) build --locked --profile $(WASM_PROFILE) --target $(WASM_TARGET)) || exit 1; \
	done

setup-bench: setup-test

# Every figure beside its peer, in one run (GUESTWARD_IDLE_SECONDS: the idle
# window, 60 s by default); then the reliability suite at full size (30
# SIGKILL trials, a 20 000-request soak) against the release binary.
bench: setup-bench build
	GUESTWARD_BIN=$(CURDIR)/target/release/guestward $(CARGO) bench -p guestward-tests
	GUESTWARD_BIN=$(CURDIR)/target/release/guestward GUESTWARD_KILL_TRIALS=30 GUESTWARD_SOAK=20000 \
	  $(CARGO) test --release -p guestward-tests --test e2e reliability:: -- --nocapture --test-threads 1

fuzz: build
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd host && for target in $(FUZZ_TARGETS); do \
	  $(CARGO) +nightly fuzz run $$target -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done
	$(MAKE) fuzz-smoke GUESTWARD=target/release/guestward FUZZ_BUDGET="--time $(FUZZ_SECONDS)" \
	  FUZZ_SEED=$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')

install: build
	$(MAKE) install-files INSTALL_BIN=target/release/guestward

# What `install` puts in place, from binaries already built. Nothing under
# /etc is overwritten: the policy is built into the binary, so it is
# installed as documentation, and an operator's changes go in policy.d
# (a copy in /etc/guestward/policy.toml would freeze this version's policy
# as the operator's across upgrades).
install-files:
	install -D -m 0755 $(INSTALL_BIN) $(DESTDIR)$(SBINDIR)/guestward
	install -d -m 0755 $(DESTDIR)$(LIBDIR)/commands
	install -m 0644 $(BUILTIN_DIR)/*.wasm $(DESTDIR)$(LIBDIR)/commands/
	install -d -m 0755 $(DESTDIR)$(SYSCONF) $(DESTDIR)$(SYSCONF)/policy.d $(DESTDIR)$(SYSCONF)/trusted-keys
	install -D -m 0644 host/src/policy/default.toml $(DESTDIR)$(DOCDIR)/policy.toml
	install -D -m 0644 dist/guestward.toml $(DESTDIR)$(DOCDIR)/guestward.toml
	@# The unit names /usr/sbin and /usr/lib/guestward; another PREFIX moves them.
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/sbin/guestward|$(SBINDIR)/guestward|g' -e 's|/usr/lib/guestward|$(LIBDIR)|g' \
	  dist/guestward.service > $(DESTDIR)$(UNITDIR)/guestward.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/guestward.service
	$(INSTALL_BIN) generate man $(DESTDIR)$(MANDIR)/man8
	install -d -m 0755 $(DESTDIR)$(DATADIR)/bash-completion/completions \
	  $(DESTDIR)$(DATADIR)/zsh/vendor-completions $(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	$(INSTALL_BIN) generate completion bash > $(DESTDIR)$(DATADIR)/bash-completion/completions/guestward
	$(INSTALL_BIN) generate completion zsh > $(DESTDIR)$(DATADIR)/zsh/vendor-completions/_guestward
	$(INSTALL_BIN) generate completion fish > $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/guestward.fish
	@# A warm compile cache: the first boot loads, it does not compile.
	@# (A package makes it on the machine instead: WARM_CACHE=no.)
	if [ "$(WARM_CACHE)" != no ]; then \
	  install -d -m 0700 $(DESTDIR)$(CACHEDIR) && \
	  $(DESTDIR)$(SBINDIR)/guestward compile --commands $(DESTDIR)$(LIBDIR)/commands \
	    --cache $(DESTDIR)$(CACHEDIR) --policy host/src/policy/default.toml \
	    --policy-dir $(DESTDIR)$(SYSCONF)/policy.d; \
	fi

# A Debian package of the install layout: `make deb` builds the release
# binary first; `make deb-files INSTALL_BIN=…` packages binaries already
# built. The compile cache is not shipped: postinst makes it on the machine.
DEB_ROOT := target/deb-root
DEB_COMPRESS ?= -Zxz
DEB_DIR ?= target
deb: build
	$(MAKE) deb-files INSTALL_BIN=target/release/guestward

deb-files:
	rm -rf $(DEB_ROOT)
	$(MAKE) install-files DESTDIR=$(CURDIR)/$(DEB_ROOT) PREFIX=/usr WARM_CACHE=no
	install -d $(DEB_ROOT)/DEBIAN
	install -m 0755 dist/debian/postinst dist/debian/prerm dist/debian/postrm $(DEB_ROOT)/DEBIAN/
	version=$$($(INSTALL_BIN) --version | cut -d' ' -f2); \
	arch=$$(dpkg --print-architecture); \
	size=$$(du -sk --exclude=DEBIAN $(DEB_ROOT) | cut -f1); \
	sed -e "s/@VERSION@/$$version/" -e "s/@ARCH@/$$arch/" -e "s/@SIZE@/$$size/" \
	  dist/debian/control > $(DEB_ROOT)/DEBIAN/control; \
	(cd $(DEB_ROOT) && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | xargs -0 md5sum > DEBIAN/md5sums); \
	dpkg-deb --root-owner-group $(DEB_COMPRESS) --build $(DEB_ROOT) $(DEB_DIR)/guestward_$${version}_$${arch}.deb

clean:
	$(CARGO) clean
