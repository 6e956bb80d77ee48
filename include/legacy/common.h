/*
 * common.h: the legacy 1.x "common.h" of gala-gopher's in-tree C probes,
 * kept so that such probes build unchanged (docs/compat.md §3).
 * SPDX-License-Identifier: MulanPSL-2.0
 *
 * Same names, types and signatures as the 1.x header; the functions are
 * implemented by libgopher. The log macros write to the agent's log at the
 * matching level through gopher_log (DEBUG at debug, INFO at info, WARN at
 * warn, ERROR at error); the agent's log_level decides what is kept. A
 * trailing newline of a message is dropped (the legacy messages end in one).
 */
#ifndef __GOPHER_COMMON_H__
#define __GOPHER_COMMON_H__


#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* Buffer sizes and indexes, as 1.x has them. */
#define INT_LEN 32
#define THOUSAND 1000
#define PATH_NUM 20
#define IP_LEN 4
#define IP_STR_LEN 128
#define IP6_LEN 16
#define IP6_STR_LEN 128

#define IP4_BYTE_1 0
#define IP4_BYTE_2 1
#define IP4_BYTE_3 2
#define IP4_BYTE_4 3
#define IP4_BYTE_1_IN_IP6 12
#define IP4_BYTE_2_IN_IP6 13
#define IP4_BYTE_3_IN_IP6 14
#define IP4_BYTE_4_IN_IP6 15

#define TM_STR_LEN 48

#define TASK_COMM_LEN 16
#define PROC_CMDLINE_LEN 128
#define MAX_PROCESS_NAME_LEN 32
#define TASK_EXE_FILE_LEN 128
#define JAVA_COMMAND_LEN 128
#define JAVA_CLASSPATH_LEN 512

#define CONTAINER_NAME_LEN 64
#define CONTAINER_ID_LEN 64
#define CONTAINER_ABBR_ID_LEN 12
#define NAMESPACE_LEN 64
#define POD_NAME_LEN 64

#define COMMAND_LEN 256
#define LINE_BUF_LEN 512
#define PATH_LEN 256
#define POD_ID_LEN 64

#if !defined INET6_ADDRSTRLEN
#define INET6_ADDRSTRLEN 48
#endif
#if !defined DISK_NAME_LEN
#define DISK_NAME_LEN 32
#endif
#if !defined TIME_STRING_LEN
#define TIME_STRING_LEN 32
#endif
#ifndef PERF_MAX_STACK_DEPTH
#define PERF_MAX_STACK_DEPTH 127
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Log functions behind the macros: printf-style, one agent log line each. */
void debug_logs(const char *format, ...) __attribute__((format(printf, 1, 2)));
void info_logs(const char *format, ...) __attribute__((format(printf, 1, 2)));
void warn_logs(const char *format, ...) __attribute__((format(printf, 1, 2)));
void error_logs(const char *format, ...) __attribute__((format(printf, 1, 2)));

#ifdef __cplusplus
}
#endif

#define DEBUG debug_logs
#define INFO info_logs
#define WARN warn_logs
#define ERROR error_logs

#define DEBUG_STR "[DEBUG]"
#define INFO_STR "[INFO]"
#define WARN_STR "[WARN]"
#define ERROR_STR "[ERROR]"

#define max(x, y) ((x) > (y) ? (x) : (y))
#define min(x, y) ((x) < (y) ? (x) : (y))
#define min_zero(x, y) ((x) == 0 ? (y) : (((x) < (y) ? (x) : (y))))

#define __maybe_unused __attribute__((unused))

#define HZ 100

#define MSEC_PER_SEC 1000L
#define USEC_PER_MSEC 1000L
#define NSEC_PER_USEC 1000L
#define NSEC_PER_MSEC 1000000L
#define USEC_PER_SEC 1000000L
#define NSEC_PER_SEC 1000000000L
#define FSEC_PER_SEC 1000000000000000LL

#ifndef NULL
#define NULL ((void *)0)
#endif

#ifndef IFNAMSIZ
#define IFNAMSIZ 16
#endif

#ifndef MAX_CPU
#define MAX_CPU 128
#endif

#define NS(sec) ((__u64)(sec) * 1000000000)

/* The kernel-style integer names 1.x probes use. */
#ifndef __u8
typedef unsigned char __u8;
typedef __u8 u8;
#endif
#ifndef __s8
typedef signed char __s8;
typedef __s8 s8;
#endif
#ifndef __s16
typedef signed short __s16;
typedef __s16 s16;
#endif
#ifndef __u16
typedef unsigned short __u16;
typedef __u16 u16;
typedef __u16 __be16;
#endif
#ifndef __u32
typedef unsigned int __u32;
typedef __u32 u32;
typedef __u32 __be32;
typedef __u32 __wsum;
#endif
#ifndef __s64
typedef long long __s64;
typedef __s64 s64;
#endif
#ifndef __u64
typedef unsigned long long __u64;
typedef __u64 u64;
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Cuts one trailing '\n' off s (NULL is ignored). */
void split_newline_symbol(char *s);
#define SPLIT_NEWLINE_SYMBOL(s) split_newline_symbol(s)

#ifndef ntohs
unsigned short ntohs(unsigned short netshort);
#endif

#define NIP6(addr)                                                                         \
    ntohs((addr)[0]), ntohs((addr)[1]), ntohs((addr)[2]), ntohs((addr)[3]),                \
        ntohs((addr)[4]), ntohs((addr)[5]), (ntohs((addr)[6]) >> 8),                       \
        (ntohs((addr)[6]) & 0xff), (ntohs((addr)[7]) >> 8), (ntohs((addr)[7]) & 0xff)
#define NIP6_FMT "%04x:%04x:%04x:%04x:%04x:%04x:%u.%u.%u.%u"

#define NIP6_IS_ADDR_V4MAPPED(addr)                                                        \
    (((addr)[0] == 0) && ((addr)[1] == 0) && ((addr)[2] == 0) && ((addr)[3] == 0) &&      \
     ((addr)[4] == 0) && ((addr)[5] == 0xffff))

/* "YYYY-MM-DD" and "YYYY-MM-DD-hh-mm-ss", local time, in a buffer of the
 * calling thread that the next call overwrites. */
char *get_cur_date(void);
char *get_cur_time(void);

/* Formats an address of family AF_INET (4 bytes) or AF_INET6 (16 bytes) into
 * ip_str (ip_str_size bytes, always NUL-terminated). */
void ip_str(unsigned int family, unsigned char *ip, unsigned char *ip_str, unsigned int ip_str_size);
/* Runs cmd with /bin/sh and puts the first line of its output, without the
 * newline, in buf. 0 on success, -1 when it cannot run or prints nothing. */
int exec_cmd(const char *cmd, char *buf, unsigned int buf_len);
/* 1 when the kernel module mod is loaded, else 0. */
char is_exist_mod(const char *mod);
/* Appends a formatted string at *buf (bufLen bytes free): on success *buf
 * moves past it, *remainLen = bufLen - written, and 0 is returned; -1 when
 * it does not fit or bufLen <= 0. */
int __snprintf(char **buf, const int bufLen, int *remainLen, const char *format, ...)
    __attribute__((format(printf, 4, 5)));
/* 1 when every character of s is a decimal digit. */
char is_digit_str(const char *s);
/* 0 on success, -1 on failure. */
int get_system_uuid(char *buffer, unsigned int size);
int get_system_ip(char ip_str[], unsigned int size);
int get_comm(int pid, char comm_str[], unsigned int size);
/* Start time of pid in clock ticks since boot (/proc/<pid>/stat field 22),
 * -1 on failure. */
int get_proc_startup_ts(int pid);
int copy_file(const char *dst_file, const char *src_file);
/* 1 when path holds a shell metacharacter or a "./" "/." sequence. */
int check_path_for_security(const char *path);

#ifdef __cplusplus
}
#endif

#endif /* __GOPHER_COMMON_H__ */
