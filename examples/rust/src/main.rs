//! ivcr-search: search an ivcr index from Rust, declaring the few C functions of libivcr it uses.
//!
//!     ivcr-search INDEX "QUERY" [K]
//!
//! Prints each hit with its moment and evidence lines; exit status 2 with the engine's status
//! and message on an error.
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_double, c_float, c_int, c_void};
use std::process::exit;

#[repr(C)]
struct Hit {
    reference: i64,
    video_id: *const c_char,
    name: *const c_char,
    start: c_double,
    end: c_double,
    score: c_float,
    moment_score: c_float,
    duration: c_double,
}

#[repr(C)]
struct Line {
    source: *const c_char,
    start: c_double,
    end: c_double,
    text: *const c_char,
    matched: c_float,
}

const IVCR_ABI_VERSION: c_int = 1;

extern "C" {
    fn ivcr_abi_version() -> c_int;
    fn ivcr_last_error() -> *const c_char;
    fn ivcr_status_name(status: c_int) -> *const c_char;
    fn ivcr_index_open(path: *const c_char, opts: *const c_void, out: *mut *mut c_void) -> c_int;
    fn ivcr_index_close(index: *mut c_void);
    fn ivcr_index_live_count(index: *const c_void) -> usize;
    fn ivcr_search(index: *mut c_void, query: *const c_char, k: c_int, opts: *const c_void,
                   out: *mut *mut c_void) -> c_int;
    fn ivcr_results_count(results: *const c_void) -> usize;
    fn ivcr_results_hit(results: *const c_void, i: usize, out: *mut Hit) -> c_int;
    fn ivcr_results_line_count(results: *const c_void, i: usize) -> usize;
    fn ivcr_results_line(results: *const c_void, i: usize, j: usize, out: *mut Line) -> c_int;
    fn ivcr_results_free(results: *mut c_void);
}

fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn check(status: c_int, what: &str) {
    if status != 0 {
        let (name, msg) = unsafe { (text(ivcr_status_name(status)), text(ivcr_last_error())) };
        eprintln!("error: {}: {}: {}", what, name, msg);
        exit(2);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: {} INDEX \"QUERY\" [K]", args[0]);
        exit(1);
    }
    let k: c_int = args.get(3).map(|s| s.parse().unwrap_or(5)).unwrap_or(5);
    if unsafe { ivcr_abi_version() } != IVCR_ABI_VERSION {
        eprintln!("error: libivcr's ABI differs from the one this program declares");
        exit(2);
    }
    let path = CString::new(args[1].as_str()).expect("no NUL in the path");
    let query = CString::new(args[2].as_str()).expect("no NUL in the query");
    let mut index: *mut c_void = std::ptr::null_mut();
    check(unsafe { ivcr_index_open(path.as_ptr(), std::ptr::null(), &mut index) }, "open");
    println!("index: {} videos", unsafe { ivcr_index_live_count(index) });
    let mut results: *mut c_void = std::ptr::null_mut();
    let status = unsafe { ivcr_search(index, query.as_ptr(), k, std::ptr::null(), &mut results) };
    if status != 0 {
        unsafe { ivcr_index_close(index) };
        check(status, "search");
    }
    for i in 0..unsafe { ivcr_results_count(results) } {
        let mut hit = Hit { reference: -1, video_id: std::ptr::null(), name: std::ptr::null(), start: 0.0,
                            end: 0.0, score: 0.0, moment_score: 0.0, duration: 0.0 };
        check(unsafe { ivcr_results_hit(results, i, &mut hit) }, "hit");
        println!("{}. video {} ref {} {} {:.2}-{:.2}s score {:.4}", i + 1, text(hit.video_id), hit.reference,
                 text(hit.name), hit.start, hit.end, hit.score);
        for j in 0..unsafe { ivcr_results_line_count(results, i) } {
            let mut line = Line { source: std::ptr::null(), start: 0.0, end: 0.0, text: std::ptr::null(),
                                  matched: 0.0 };
            check(unsafe { ivcr_results_line(results, i, j, &mut line) }, "line");
            println!("   [{} {:.2}-{:.2}] {}", text(line.source), line.start, line.end, text(line.text));
        }
    }
    unsafe {
        ivcr_results_free(results);
        ivcr_index_close(index);
    }
}
