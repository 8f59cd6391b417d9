/*
 * journal.h - shared by journal.c (appending) and replicator.c (reading,
 * acknowledging, compacting, finishing orphans); private to libcs.
 */
#ifndef CS_JOURNAL_H
#define CS_JOURNAL_H

#include <sys/types.h>

#include "cs.h"

struct cs_journal_state {
	int fd;                 /* this process's journal, -1 until first use */
	int opening;            /* a thread is creating it */
	unsigned long appended; /* entries appended by this process */
	pid_t owner;
	char name[CS_PATH_MAX];
};

extern struct cs_journal_state cs_jr;

/* A new locked journal in CS_SPOOL; its fd (O_APPEND) and name. */
int cs_journal_create(char *name, size_t namesz);
/* Append "K <off>" to the journal open at fd. */
int cs_journal_ack(int fd, uint64_t off);

#endif
