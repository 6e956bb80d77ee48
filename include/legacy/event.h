/*
 * event.h: the legacy 1.x "event.h" (abnormal events from C probes), kept so
 * that such probes build unchanged (docs/compat.md §3).
 * SPDX-License-Identifier: MulanPSL-2.0
 *
 * report_logs emits one record of the reserved table `event`, which the
 * agent sends to its event channel (event.out_channel).
 */
#ifndef __GOPHER_EVT_H__
#define __GOPHER_EVT_H__


#define MAX_ENTITY_NAME_LEN 128
#define MAX_EVT_NUM 1000

/* Severities; the event carries INFO 9, WARN 13, ERROR 17 or FATAL 21. */
enum evt_sec_e {
    EVT_SEC_INFO = 0,
    EVT_SEC_WARN,
    EVT_SEC_ERROR,
    EVT_SEC_FATAL,

    EVT_SEC_MAX
};

#ifdef __cplusplus
extern "C" {
#endif

/* Reports an abnormal event of the entity (entityName, entityId) about
 * metric `metrics`, its body formatted printf-style from fmt. The body reads
 * "<local time> <LEVEL> Entity(<entityId>) <message>". After init_event_mgr
 * with time_out > 0, an entity reports at most once per time_out seconds. */
void report_logs(const char *entityName, const char *entityId, const char *metrics,
                 enum evt_sec_e sec, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Sets the per-entity report period (seconds, 0: every event). lang_type
 * named a translation of event texts in 1.x; it is not supported here. */
void init_event_mgr(unsigned int time_out, char *lang_type);

#ifdef __cplusplus
}
#endif

#endif /* __GOPHER_EVT_H__ */
