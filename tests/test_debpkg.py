from iobench import debpkg


def test_parse_control_reads_every_stanza_and_joins_continuations() -> None:
    text = (
        "Package: iperf3\nVersion: 3.12-1+deb12u2\nDepends: libc6 (>= 2.34), libiperf0 (= 3.12-1+deb12u2)\n"
        "Description: Internet Protocol bandwidth measuring tool\n more text\n\n"
        "Package: libiperf0\nVersion: 3.12-1+deb12u2\nDepends: libc6 (>= 2.34), libsctp1 (>= 1.0.10), libssl3 (>= 3.0.0)\n"
    )
    stanzas = debpkg.parse_control(text)
    assert [s["Package"] for s in stanzas] == ["iperf3", "libiperf0"]
    assert stanzas[0]["Description"].endswith("\nmore text")


def test_dependency_names_take_first_alternative_and_drop_versions() -> None:
    deps = "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, libssl3:amd64 (>= 3.0.0)"
    assert debpkg.dependency_names(deps) == ["libc6", "debconf", "libssl3"]


def test_package_spec_pins_the_version() -> None:
    assert debpkg.Package("busybox-static", "1:1.35.0-4").spec == "busybox-static=1:1.35.0-4"
