fn main() {
  // Only the Node binding needs napi-build's link set-up; the plain-Rust
  // cores (`cargo test --no-default-features`) build without it.
  #[cfg(feature = "napi")]
  napi_build::setup();
}
