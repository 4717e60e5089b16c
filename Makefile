# The two commands the README promises. Both install what they need first.
.PHONY: test demo build fmt lint

test:            ## everything installs, then all tests (root; boots QEMU guests)
	bash scripts/test.sh

demo:            ## the main job: edgemig demo (a Debian VM with nginx follows alice over both paths; her download survives the address change)
	bash scripts/demo.sh

build:
	bash scripts/setup.sh
	bash scripts/build.sh --release

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
