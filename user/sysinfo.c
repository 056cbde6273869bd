// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <zlib.h>
#include "sysinfo.h"

int kallsyms_lookup(const char *const *names, uint64_t *addrs, int n)
{
	static char buf[1 << 20]; /* few large reads: the kernel formats kallsyms per read() */
	FILE *f = fopen("/proc/kallsyms", "r");
	char line[512];
	int found = 0;

	for (int i = 0; i < n; i++)
		addrs[i] = 0;
	if (!f)
		return 0;
	setvbuf(f, buf, _IOFBF, sizeof(buf));
	/* "ADDR TYPE NAME[\t[MODULE]]": parsed by hand (sscanf was most of the time) */
	while (found < n && fgets(line, sizeof(line), f)) {
		char *sym = strchr(line, ' ');

		if (!sym || !(sym = strchr(sym + 1, ' ')))
			continue;
		sym++;
		sym[strcspn(sym, "\t\n")] = '\0';
		for (int i = 0; i < n; i++) {
			if (!addrs[i] && strcmp(sym, names[i]) == 0) {
				addrs[i] = strtoull(line, NULL, 16);
				found += addrs[i] != 0;
			}
		}
	}
	fclose(f);
	return found;
}

static unsigned int hz_from_line(const char *line)
{
	if (strncmp(line, "CONFIG_HZ=", 10) == 0)
		return (unsigned int)strtoul(line + 10, NULL, 10);
	return 0;
}

unsigned int kernel_hz(void)
{
	char line[512], path[300];
	struct utsname u;
	unsigned int hz = 0;
	gzFile gz;
	FILE *f;

	gz = gzopen("/proc/config.gz", "rb");
	if (gz) {
		while (!hz && gzgets(gz, line, sizeof(line)))
			hz = hz_from_line(line);
		gzclose(gz);
		if (hz)
			return hz;
	}
	if (uname(&u))
		return 0;
	snprintf(path, sizeof(path), "/boot/config-%s", u.release);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (!hz && fgets(line, sizeof(line), f))
		hz = hz_from_line(line);
	fclose(f);
	return hz;
}

long long read_sysctl(const char *name)
{
	char path[256];
	long long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/sys/%s", name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%lld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

int ensure_tracefs(void)
{
	if (access("/sys/kernel/tracing/events", F_OK) == 0)
		return 0;
	if (mount("nodev", "/sys/kernel/tracing", "tracefs", 0, NULL) && errno != EBUSY)
		return -errno;
	return access("/sys/kernel/tracing/events", F_OK) ? -ENOENT : 0;
}
