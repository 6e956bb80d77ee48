/*
 * Private to libgopher: the Rust side of the legacy 1.x headers
 * (ffi/src/legacy.rs), called from legacy.c. Not installed.
 */
#ifndef GOPHER_LEGACY_INTERNAL_H
#define GOPHER_LEGACY_INTERNAL_H

/* Emits the event record; returns 0, or -1 when it was refused (logged). */
int gopher_legacy_event_emit(const char *entity_name, const char *entity_id,
                             const char *metric, int sec, const char *body);

#endif
