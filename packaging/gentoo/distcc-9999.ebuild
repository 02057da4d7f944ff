# Copyright 2026 the distcc-rs authors
# Distributed under the terms of the GNU General Public License v3 or later

EAPI=8

inherit cargo systemd

DESCRIPTION="Distributed C/C++ compiler, wire-compatible with distcc 3.4 (Rust)"
HOMEPAGE="https://example.invalid/distcc-rs"
LICENSE="GPL-3+"
SLOT="0"
KEYWORDS="~amd64 ~arm64"
PROPERTIES="live"
IUSE=""

RDEPEND="
	acct-user/distcc
	>=dev-util/shadowman-4
	>=sys-devel/gcc-config-1.4.1
	!sys-devel/distcc
"
DEPEND="${RDEPEND}"

src_unpack() {
	cargo_live_src_unpack
}

src_compile() {
	cargo_src_compile
}

src_install() {
	emake install DESTDIR="${D}" PREFIX="${EPREFIX}/usr" BIN="$(cargo_target_dir)/distcc"
	keepdir /usr/lib/distcc
	insinto /usr/share/shadowman/tools
	newins - distcc <<< "${EPREFIX}/usr/lib/distcc"
}

pkg_preinst() {
	# Portage looks for .../distcc/bin first: keep it a link to the dir itself.
	local bin="${ED}/usr/lib/distcc/bin"
	[[ -L ${bin} ]] || { rm -rf "${bin}"; ln -s . "${bin}" || die; }
}

pkg_postinst() {
	if [[ -z ${ROOT} ]]; then
		eselect compiler-shadow update distcc
	fi
	elog "Set your hosts with: distcc-config --set-hosts \"host1/8,lzo host2/8,lzo\""
	elog "Watch jobs with: DISTCC_DIR=\"\${DISTCC_DIR:-\${BUILD_PREFIX}/.distcc}\" distccmon-text 5"
	elog "Pump mode is built in (no Python): pump emerge …, with ,cpp,lzo hosts."
}

pkg_prerm() {
	if [[ -z ${REPLACED_BY_VERSION} && -z ${ROOT} ]]; then
		eselect compiler-shadow remove distcc
	fi
}
