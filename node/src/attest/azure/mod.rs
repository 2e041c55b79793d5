//! Azure TDX confidential VM evidence (az-tdx-vtpm).
