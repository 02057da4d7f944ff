# make install / make uninstall — included by the top-level Makefile.
#   make install PREFIX=/usr DESTDIR=/tmp/stage [BIN=path/to/distcc]

BIN ?= target/release/distcc
SYSCONFDIR ?= /etc
APPLETS := distccd distcc-config distccmon-text pump distcc-pump lsdistcc
# Debian's place for it (sbin, section 8): gcc packages' hooks call it there.
SBIN_APPLETS := update-distcc-symlinks
MANPAGES := distcc.1 distccd.1 distcc-config.1 distccmon-text.1 pump.1 lsdistcc.1
MANPAGES8 := update-distcc-symlinks.8
MASQDIR := $(PREFIX)/lib/distcc
UNITDIR := $(PREFIX)/lib/systemd/system

.PHONY: install uninstall

install:
	@[ -x "$(BIN)" ] || { echo "install: $(BIN) is missing; run 'make' first" >&2; exit 1; }
	install -d "$(DESTDIR)$(PREFIX)/bin" "$(DESTDIR)$(PREFIX)/sbin" "$(DESTDIR)$(MASQDIR)" \
		"$(DESTDIR)$(PREFIX)/share/man/man1" "$(DESTDIR)$(PREFIX)/share/man/man8" \
		"$(DESTDIR)$(SYSCONFDIR)/init.d" "$(DESTDIR)$(SYSCONFDIR)/conf.d" "$(DESTDIR)$(SYSCONFDIR)/env.d" \
		"$(DESTDIR)$(UNITDIR)/distccd.service.d"
	install -m 755 "$(BIN)" "$(DESTDIR)$(PREFIX)/bin/distcc"
	for a in $(APPLETS); do ln -sfn distcc "$(DESTDIR)$(PREFIX)/bin/$$a"; done
	for a in $(SBIN_APPLETS); do ln -sfn ../bin/distcc "$(DESTDIR)$(PREFIX)/sbin/$$a"; done
	ln -sfn . "$(DESTDIR)$(MASQDIR)/bin"
	# The compiler links distcc 3.4 (Debian) makes: every installed gcc/clang name.
	"$(DESTDIR)$(PREFIX)/bin/distcc" update-distcc-symlinks --dir "$(DESTDIR)$(MASQDIR)"
	for m in $(MANPAGES); do install -m 644 "packaging/man/$$m" "$(DESTDIR)$(PREFIX)/share/man/man1/$$m"; done
	for m in $(MANPAGES8); do install -m 644 "packaging/man/$$m" "$(DESTDIR)$(PREFIX)/share/man/man8/$$m"; done
	install -m 755 packaging/openrc/distccd.initd "$(DESTDIR)$(SYSCONFDIR)/init.d/distccd"
	install -m 644 packaging/openrc/distccd.confd "$(DESTDIR)$(SYSCONFDIR)/conf.d/distccd"
	install -m 644 packaging/systemd/distccd.service "$(DESTDIR)$(UNITDIR)/distccd.service"
	install -m 644 packaging/systemd/distccd.service.d/00gentoo.conf "$(DESTDIR)$(UNITDIR)/distccd.service.d/00gentoo.conf"
	[ -e "$(DESTDIR)$(SYSCONFDIR)/env.d/02distcc" ] || install -m 644 packaging/gentoo/02distcc "$(DESTDIR)$(SYSCONFDIR)/env.d/02distcc"

uninstall:
	rm -f "$(DESTDIR)$(PREFIX)/bin/distcc"
	for a in $(APPLETS); do rm -f "$(DESTDIR)$(PREFIX)/bin/$$a"; done
	for a in $(SBIN_APPLETS); do rm -f "$(DESTDIR)$(PREFIX)/sbin/$$a"; done
	for l in "$(DESTDIR)$(MASQDIR)"/*; do \
		if [ -L "$$l" ] && [ "$$(readlink "$$l")" = ../../bin/distcc ]; then rm -f "$$l"; fi; \
	done
	rm -f "$(DESTDIR)$(MASQDIR)/bin"
	-rmdir "$(DESTDIR)$(MASQDIR)" 2>/dev/null
	for m in $(MANPAGES); do rm -f "$(DESTDIR)$(PREFIX)/share/man/man1/$$m"; done
	for m in $(MANPAGES8); do rm -f "$(DESTDIR)$(PREFIX)/share/man/man8/$$m"; done
	rm -f "$(DESTDIR)$(SYSCONFDIR)/init.d/distccd" "$(DESTDIR)$(SYSCONFDIR)/conf.d/distccd"
	rm -f "$(DESTDIR)$(UNITDIR)/distccd.service" "$(DESTDIR)$(UNITDIR)/distccd.service.d/00gentoo.conf"
	-rmdir "$(DESTDIR)$(UNITDIR)/distccd.service.d" 2>/dev/null
	rm -f "$(DESTDIR)$(SYSCONFDIR)/env.d/02distcc"
