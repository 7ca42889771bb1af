#ifndef EXCHANGER_CSQLITE_SHIM_H
#define EXCHANGER_CSQLITE_SHIM_H
#include <sqlite3.h>
#endif
