# make install / make uninstall — included by the top-level Makefile.
#   make install PREFIX=/usr DESTDIR=/tmp/stage [BIN=path/to/distcc]

BIN ?= target/release/distcc
SYSCONFDIR ?= /etc
APPLETS := distccd distcc-config distccmon-text pump distcc-pump lsdistcc
MANPAGES := distcc.1 distccd.1 distcc-config.1 distccmon-text.1 pump.1 lsdistcc.1
MASQDIR := $(PREFIX)/lib/distcc
UNITDIR := $(PREFIX)/lib/systemd/system
# Compiler names linked in the masquerade dir when the compiler exists here.
MASQ_NAMES := gcc g++ cc c++ c99 clang clang++ \
	$(shell gcc -dumpmachine 2>/dev/null | sed 's/.*/&-gcc &-g++/')

.PHONY: install uninstall

install:
	@[ -x "$(BIN)" ] || { echo "install: $(BIN) is missing; run 'make' first" >&2; exit 1; }
	install -d "$(DESTDIR)$(PREFIX)/bin" "$(DESTDIR)$(MASQDIR)" "$(DESTDIR)$(PREFIX)/share/man/man1" \
		"$(DESTDIR)$(SYSCONFDIR)/init.d" "$(DESTDIR)$(SYSCONFDIR)/conf.d" "$(DESTDIR)$(SYSCONFDIR)/env.d" \
		"$(DESTDIR)$(UNITDIR)/distccd.service.d"
	install -m 755 "$(BIN)" "$(DESTDIR)$(PREFIX)/bin/distcc"
	for a in $(APPLETS); do ln -sfn distcc "$(DESTDIR)$(PREFIX)/bin/$$a"; done
	ln -sfn . "$(DESTDIR)$(MASQDIR)/bin"
	for c in $(MASQ_NAMES); do \
		if command -v "$$c" >/dev/null 2>&1; then ln -sfn ../../bin/distcc "$(DESTDIR)$(MASQDIR)/$$c"; fi; \
	done
	for m in $(MANPAGES); do install -m 644 "packaging/man/$$m" "$(DESTDIR)$(PREFIX)/share/man/man1/$$m"; done
	install -m 755 packaging/openrc/distccd.initd "$(DESTDIR)$(SYSCONFDIR)/init.d/distccd"
	install -m 644 packaging/openrc/distccd.confd "$(DESTDIR)$(SYSCONFDIR)/conf.d/distccd"
	install -m 644 packaging/systemd/distccd.service "$(DESTDIR)$(UNITDIR)/distccd.service"
	install -m 644 packaging/systemd/distccd.service.d/00gentoo.conf "$(DESTDIR)$(UNITDIR)/distccd.service.d/00gentoo.conf"
	[ -e "$(DESTDIR)$(SYSCONFDIR)/env.d/02distcc" ] || install -m 644 packaging/gentoo/02distcc "$(DESTDIR)$(SYSCONFDIR)/env.d/02distcc"

uninstall:
	rm -f "$(DESTDIR)$(PREFIX)/bin/distcc"
	for a in $(APPLETS); do rm -f "$(DESTDIR)$(PREFIX)/bin/$$a"; done
	for l in "$(DESTDIR)$(MASQDIR)"/*; do \
		if [ -L "$$l" ] && [ "$$(readlink "$$l")" = ../../bin/distcc ]; then rm -f "$$l"; fi; \
	done
	rm -f "$(DESTDIR)$(MASQDIR)/bin"
	-rmdir "$(DESTDIR)$(MASQDIR)" 2>/dev/null
	for m in $(MANPAGES); do rm -f "$(DESTDIR)$(PREFIX)/share/man/man1/$$m"; done
	rm -f "$(DESTDIR)$(SYSCONFDIR)/init.d/distccd" "$(DESTDIR)$(SYSCONFDIR)/conf.d/distccd"
	rm -f "$(DESTDIR)$(UNITDIR)/distccd.service" "$(DESTDIR)$(UNITDIR)/distccd.service.d/00gentoo.conf"
	-rmdir "$(DESTDIR)$(UNITDIR)/distccd.service.d" 2>/dev/null
	rm -f "$(DESTDIR)$(SYSCONFDIR)/env.d/02distcc"
