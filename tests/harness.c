/* SPDX-License-Identifier: MIT */
/* harness.c -- run the real microd binary and talk HTTP to it */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static const char *
microd_bin(void)
{
	const char *bin = getenv("MICROD_BIN");

	return bin != NULL ? bin : "build/microd";
}

/* fork + exec bin with args, env added, stdout+stderr to out_fd. */
static pid_t
spawn(const char *const *pre, const char *const *args, const char *const *env,
      int out_fd, int stdout_too)
{
	char *argv[64];
	int n = 0;
	pid_t pid;

	pid = fork();
	if (pid != 0)
		return pid;
	/* The child copies what exec and putenv need, then replaces itself. */
	argv[n++] = strdup(microd_bin());
	for (; pre != NULL && *pre != NULL && n < 40; pre++)
		argv[n++] = strdup(*pre);
	for (; args != NULL && *args != NULL && n < 63; args++)
		argv[n++] = strdup(*args);
	argv[n] = NULL;
	for (; env != NULL && *env != NULL; env++)
		putenv(strdup(*env));
	dup2(out_fd, STDERR_FILENO);
	if (stdout_too)
		dup2(out_fd, STDOUT_FILENO);
	execv(argv[0], argv);
	_exit(127);
}

static char *
read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (f == NULL)
		return NULL;
	do {
		if (cap - len < 4096) {
			char *p = realloc(buf, cap + 65536);

			if (p == NULL)
				break;
			buf = p;
			cap += 65536;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
	} while (n > 0);
	fclose(f);
	if (buf != NULL)
		buf[len] = '\0';
	return buf;
}

char *
microd_log(const struct microd *m)
{
	return read_file(m->log_path);
}

int
microd_wait_log(const struct microd *m, const char *needle, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	do {
		char *log = read_file(m->log_path);
		int found = log != NULL && strstr(log, needle) != NULL;

		free(log);
		if (found)
			return 1;
		pause_ms(5);
	} while (now_ms() < deadline);
	return 0;
}

int
microd_start(struct microd *m, const char *const *args, const char *const *env)
{
	static const char *const pre[] = {"--bind", "127.0.0.1", "--port", "0",
	                                  NULL};
	long long deadline = now_ms() + 10000;
	int fd;

	memset(m, 0, sizeof(*m));
	snprintf(m->log_path, sizeof(m->log_path), "/tmp/microd-test-XXXXXX");
	fd = mkstemp(m->log_path);
	if (fd < 0)
		return -1;
	m->pid = spawn(pre, args, env, fd, 0);
	close(fd);
	if (m->pid < 0)
		return -1;
	do {
		char *log = read_file(m->log_path), *p;

		p = log != NULL ? strstr(log, "listening on ") : NULL;
		if (p != NULL && strchr(p, '\n') != NULL) {
			*strchr(p, '\n') = '\0';
			m->port = (unsigned int)strtoul(strrchr(p, ':') + 1,
			                                NULL, 10);
		}
		free(log);
		if (m->port != 0) {
			snprintf(m->base, sizeof(m->base),
			         "http://127.0.0.1:%u", m->port);
			return 0;
		}
		if (waitpid(m->pid, NULL, WNOHANG) == m->pid) {
			m->pid = 0;
			return -1;
		}
		pause_ms(5);
	} while (now_ms() < deadline);
	microd_cleanup(m); /* never leave a stray server behind */
	return -1;
}

int
microd_wait_exit(struct microd *m, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	int status;

	if (m->pid <= 0)
		return -1;
	do {
		pid_t r = waitpid(m->pid, &status, WNOHANG);

		if (r == m->pid) {
			m->pid = 0;
			return status;
		}
		if (r < 0)
			return -1;
		pause_ms(2);
	} while (now_ms() < deadline);
	return -1;
}

void
microd_cleanup(struct microd *m)
{
	if (m->pid > 0) {
		kill(m->pid, SIGKILL);
		waitpid(m->pid, NULL, 0);
		m->pid = 0;
	}
	if (m->log_path[0] != '\0' && getenv("MICROD_KEEP_LOGS") == NULL)
		unlink(m->log_path);
}

long
microd_rss_kib(const struct microd *m)
{
	char path[64], *status, *p;
	long kib = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)m->pid);
	status = read_file(path);
	if (status == NULL)
		return -1;
	p = strstr(status, "VmRSS:");
	if (p != NULL)
		kib = strtol(p + 6, NULL, 10);
	free(status);
	return kib;
}

int
microd_run(const char *const *args, const char *const *env, char *out,
           size_t outlen)
{
	char path[] = "/tmp/microd-run-XXXXXX";
	int fd = mkstemp(path), status = -1;
	pid_t pid;
	char *text;

	if (fd < 0)
		return -1;
	pid = spawn(NULL, args, env, fd, 1);
	close(fd);
	if (pid > 0)
		waitpid(pid, &status, 0);
	text = read_file(path);
	snprintf(out, outlen, "%s", text != NULL ? text : "");
	free(text);
	unlink(path);
	return status;
}

/* ---- libcurl ---- */

struct buf {
	char *data;
	size_t len;
};

static size_t
on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct buf *b = userdata;
	size_t n = size * nmemb;
	char *p = realloc(b->data, b->len + n + 1);

	if (p == NULL)
		return 0;
	memcpy(p + b->len, ptr, n);
	b->data = p;
	b->len += n;
	p[b->len] = '\0';
	return n;
}

static size_t
on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct buf *b = userdata;

	/* A new status line starts the final response's block afresh. */
	if (size * nmemb > 5 && strncmp(ptr, "HTTP/", 5) == 0)
		b->len = 0;
	return on_data(ptr, size, nmemb, userdata);
}

void *
http_handle_new(void)
{
	return curl_easy_init();
}

void
http_handle_free(void *curl)
{
	curl_easy_cleanup(curl);
}

struct http_result
http_do(const char *base, const char *path, const struct http_opts *o)
{
	struct http_result r = {0};
	struct buf body = {0}, head = {0};
	struct curl_slist *hdrs = NULL;
	char url[2048], ct[256];
	CURL *c = o->curl != NULL ? o->curl : curl_easy_init();
	json_error_t jerr;

	if (c == NULL) {
		r.curl_error = -1;
		return r;
	}
	curl_easy_reset(c);
	snprintf(url, sizeof(url), "%s%s", base, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &head);
	if (o->body != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, o->body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
		                 (curl_off_t)o->body_len);
	}
	if (o->method != NULL)
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, o->method);
	if (o->head)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	if (o->http10)
		curl_easy_setopt(c, CURLOPT_HTTP_VERSION,
		                 (long)CURL_HTTP_VERSION_1_0);
	snprintf(ct, sizeof(ct), "Content-Type: %s",
	         o->content_type != NULL ? o->content_type : "");
	hdrs = curl_slist_append(hdrs, ct); /* "Content-Type:" drops curl's */
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);

	r.curl_error = (int)curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &r.connects);
	r.body = body.data != NULL ? body.data : strdup("");
	r.body_len = body.len;
	r.headers = head.data != NULL ? head.data : strdup("");
	r.json = json_loadb(r.body, r.body_len, JSON_DECODE_ANY, &jerr);
	curl_slist_free_all(hdrs);
	if (o->curl == NULL)
		curl_easy_cleanup(c);
	return r;
}

struct http_result
http_get(const char *base, const char *path)
{
	struct http_opts o = {0};

	return http_do(base, path, &o);
}

const char *
http_header(const struct http_result *r, const char *name, char *buf,
            size_t len)
{
	size_t n = strlen(name);

	for (const char *line = r->headers; line != NULL && *line != '\0';) {
		const char *eol = strchr(line, '\n');
		size_t ll = eol != NULL ? (size_t)(eol - line) : strlen(line);

		if (ll > n && strncasecmp(line, name, n) == 0 &&
		    line[n] == ':') {
			const char *v = line + n + 1;
			size_t vl;

			while (*v == ' ')
				v++;
			vl = (size_t)(line + ll - v);
			while (vl > 0 &&
			       (v[vl - 1] == '\r' || v[vl - 1] == ' '))
				vl--;
			snprintf(buf, len, "%.*s", (int)vl, v);
			return buf;
		}
		line = eol != NULL ? eol + 1 : NULL;
	}
	return NULL;
}

void
http_result_free(struct http_result *r)
{
	free(r->body);
	free(r->headers);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

/* ---- raw sockets ---- */

int
raw_connect(unsigned int port)
{
	struct sockaddr_in sin = {0};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int
raw_send(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static size_t
recv_loop(int fd, char *buf, size_t cap, const char *needle, int timeout_ms,
          int *found)
{
	long long deadline = now_ms() + timeout_ms;
	size_t len = 0;

	*found = 0;
	buf[0] = '\0';
	while (len + 1 < cap) {
		struct pollfd pfd = {fd, POLLIN, 0};
		long long left = deadline - now_ms();
		ssize_t n;

		if (needle != NULL && strstr(buf, needle) != NULL) {
			*found = 1;
			break;
		}
		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			break;
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
	}
	if (needle != NULL && strstr(buf, needle) != NULL)
		*found = 1;
	return len;
}

size_t
raw_recv(int fd, char *buf, size_t cap, int timeout_ms)
{
	int found;

	return recv_loop(fd, buf, cap, NULL, timeout_ms, &found);
}

int
raw_recv_until(int fd, char *buf, size_t cap, const char *needle,
               int timeout_ms)
{
	int found;

	recv_loop(fd, buf, cap, needle, timeout_ms, &found);
	return found;
}
