// Precision selection for the CPU kernels. Every file under kernels/cpu/ and the model code
// is compiled twice: once as float (the trainer) and once with -DMT_DOUBLE (the gradient
// checks, whose tolerances are only meaningful in double). F(name) gives the suffixed symbol.
#pragma once
#include <cblas.h>
#include <fftw3.h>   // after tgmath.h (which brings complex.h): FFTW's complex is then C99 complex
#include <tgmath.h>  // exp/log/sqrt/... pick the float or double version from the argument type

#ifdef MT_DOUBLE
typedef double real;
#define MT_SFX(n) n##_f64
#define cblas_gemm cblas_dgemm
#define FFTW(n) fftw_##n
#else
typedef float real;
#define MT_SFX(n) n##_f32
#define cblas_gemm cblas_sgemm
#define FFTW(n) fftwf_##n
#endif
#define F(n) MT_SFX(n)
