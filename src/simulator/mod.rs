//! A stand-in Appwrite server for the demo, tests and benchmarks.
