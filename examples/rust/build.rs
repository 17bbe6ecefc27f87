// Link libivcr from the installed ivcr_engine package: IVCR_LIBDIR when set, else what
// `ivcr config --libdir` prints; an rpath so the program finds it with no environment variables.
use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=IVCR_LIBDIR");
    let libdir = match env::var("IVCR_LIBDIR") {
        Ok(dir) => dir,
        Err(_) => {
            let out = Command::new("ivcr")
                .args(["config", "--libdir"])
                .output()
                .expect("`ivcr config --libdir` failed: install ivcr_engine or set IVCR_LIBDIR");
            String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
        }
    };
    println!("cargo:rustc-link-search=native={}", libdir);
    println!("cargo:rustc-link-lib=dylib=ivcr");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", libdir);
}
