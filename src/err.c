#include "err.h"

const char *bloqr_strerror(int err)
{
	switch (err) {
	case BLOQR_OK: return "success";
	case BLOQR_EUNAVAIL: return "database unavailable";
	case BLOQR_EINPUT: return "invalid data";
	case BLOQR_ECONFLICT: return "conflicts with existing data";
	case BLOQR_EBUG: return "internal error";
	case BLOQR_ENOTFOUND: return "not found";
	case BLOQR_ECACHE: return "cache unusable";
	case BLOQR_ENOMEM: return "out of memory";
	default: return "unknown error";
	}
}
