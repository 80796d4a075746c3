/*
 * bcryptprimitives.c: a stand-in for Windows's bcryptprimitives.dll, for
 * running Rust-built Windows programs under Wine 8.0 (Debian 12's), which
 * lacks the DLL. Rust's standard library (1.78 and later) draws its random
 * numbers from ProcessPrng in it; without the DLL binance_uds.dll does not
 * load. Real Windows (10 and later) has the DLL: this shim is only for the
 * tests under Wine (scripts/platforms.sh), never shipped.
 *
 * ProcessPrng fills the buffer from RtlGenRandom (advapi32's
 * SystemFunction036), which Wine implements over the host's random source.
 *
 * Build: x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll \
 *        bcryptprimitives.c bcryptprimitives.def -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* Documented to always return TRUE; fills `len` bytes, in pieces RtlGenRandom
 * accepts (a ULONG at a time). */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
