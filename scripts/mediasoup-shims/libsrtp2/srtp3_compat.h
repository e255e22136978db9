/*
 * libsrtp 3.0 API on top of libsrtp 2.5 — for building mediasoup 3.15 against Debian's libsrtp2.
 *
 * mediasoup 3.15 is written against versatica's libsrtp "3.0-alpha" fork; Debian 12 ships libsrtp
 * 2.5.0. The parts of the API mediasoup uses differ in two ways:
 *   1. 3.0 takes packet lengths as `size_t *`, 2.5 as `int *`, in srtp_protect, srtp_unprotect,
 *      srtp_protect_rtcp and srtp_unprotect_rtcp (in-place, three-argument forms in both).
 *   2. 3.0 renamed srtp_remove_stream() to srtp_stream_remove().
 * Everything else mediasoup uses (srtp_create/dealloc, policies, events, error codes,
 * SRTP_MAX_TRAILER_LEN) is the same in both.
 *
 * This header is forced into every compile of the worker with `-include` (see meson.build next to
 * it), so it is seen before mediasoup's own `#include <srtp.h>`, whose include guard then makes
 * that a no-op. The bridges are C++ overloads on the pointer type: a call with `size_t *` picks the
 * bridge, a call with `int *` still reaches libsrtp directly, and nothing is renamed by macros.
 *
 * Semantics: libsrtp 2.5 reads *len as the input length and writes the output length back; the
 * bridges copy in and out. Packet sizes are bounded by mediasoup's buffers (far below INT_MAX);
 * a larger length is refused with srtp_err_status_bad_param instead of being truncated.
 *
 * Proven so far: compiles, links, and the worker runs transports. That SRTP actually works
 * through it is only proven by a browser call that decodes media (the e2e test).
 */
#ifndef VIDEOTELLER_SRTP3_COMPAT_H
#define VIDEOTELLER_SRTP3_COMPAT_H

#include <srtp.h> /* /usr/include/srtp2/srtp.h, put on the include path by the shim */

#ifdef __cplusplus
#include <climits>
#include <cstddef>
#include <cstdint>

namespace videoteller_srtp3_compat
{
	using srtp_fn = srtp_err_status_t (*)(srtp_t, void*, int*);

	inline srtp_err_status_t call_with_int_len(srtp_fn fn, srtp_t ctx, void* hdr, size_t* len)
	{
		if (len == nullptr || *len > static_cast<size_t>(INT_MAX))
			return srtp_err_status_bad_param;

		int intLen = static_cast<int>(*len);
		const srtp_err_status_t err = fn(ctx, hdr, &intLen);

		if (intLen >= 0)
			*len = static_cast<size_t>(intLen);

		return err;
	}
} // namespace videoteller_srtp3_compat

inline srtp_err_status_t srtp_protect(srtp_t ctx, void* rtp_hdr, size_t* len_ptr)
{
	return videoteller_srtp3_compat::call_with_int_len(
	  static_cast<videoteller_srtp3_compat::srtp_fn>(&::srtp_protect), ctx, rtp_hdr, len_ptr);
}

inline srtp_err_status_t srtp_unprotect(srtp_t ctx, void* srtp_hdr, size_t* len_ptr)
{
	return videoteller_srtp3_compat::call_with_int_len(
	  static_cast<videoteller_srtp3_compat::srtp_fn>(&::srtp_unprotect), ctx, srtp_hdr, len_ptr);
}

inline srtp_err_status_t srtp_protect_rtcp(srtp_t ctx, void* rtcp_hdr, size_t* len_ptr)
{
	return videoteller_srtp3_compat::call_with_int_len(
	  static_cast<videoteller_srtp3_compat::srtp_fn>(&::srtp_protect_rtcp), ctx, rtcp_hdr, len_ptr);
}

inline srtp_err_status_t srtp_unprotect_rtcp(srtp_t ctx, void* srtcp_hdr, size_t* len_ptr)
{
	return videoteller_srtp3_compat::call_with_int_len(
	  static_cast<videoteller_srtp3_compat::srtp_fn>(&::srtp_unprotect_rtcp), ctx, srtcp_hdr, len_ptr);
}

/* 3.0 name of 2.5's srtp_remove_stream(); mediasoup passes the SSRC in network byte order, as 2.5
   expects too. */
inline srtp_err_status_t srtp_stream_remove(srtp_t session, uint32_t ssrc)
{
	return srtp_remove_stream(session, ssrc);
}

#endif /* __cplusplus */
#endif /* VIDEOTELLER_SRTP3_COMPAT_H */
