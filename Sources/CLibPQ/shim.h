#ifndef EXCHANGER_CLIBPQ_SHIM_H
#define EXCHANGER_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
