//! The simulated TEE. INSECURE: for development and tests only.
