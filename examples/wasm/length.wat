;; A Caravan module in WebAssembly text: answers {"length": N}, the length in bytes of its JSON input. Upload the
;; file as it is: PUT /v1/modules/length {"wat": "<this file>"}.
;;
;; The caravan ABI: export `memory`, `caravan_alloc(size) -> pointer` and `caravan_run(pointer, length)`, which
;; returns the output's pointer and length packed as (pointer << 32) | length.
(module
  (memory (export "memory") 1)
  ;; A bump allocator from 1 KiB: a call's memory lives as long as the call.
  (global $heap (mut i32) (i32.const 1024))
  (func $alloc (export "caravan_alloc") (param $size i32) (result i32)
    (local $pointer i32)
    (local.set $pointer (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.div_u (local.get $size) (i32.const 65536)) (i32.const 1))))))
    (local.get $pointer))
  (data (i32.const 0) "{\"length\":")
  (func (export "caravan_run") (param $input i32) (param $length i32) (result i64)
    (local $out i32) (local $digits i32) (local $n i32) (local $end i32)
    ;; At most 10 digits: 10 bytes of prefix, 10 of digits, 1 closing brace.
    (local.set $out (call $alloc (i32.const 21)))
    (memory.copy (local.get $out) (i32.const 0) (i32.const 10))
    ;; Count the digits, then write them from the last.
    (local.set $n (local.get $length))
    (local.set $digits (i32.const 1))
    (block $counted
      (loop $count
        (br_if $counted (i32.lt_u (local.get $n) (i32.const 10)))
        (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
        (local.set $digits (i32.add (local.get $digits) (i32.const 1)))
        (br $count)))
    (local.set $end (i32.add (i32.add (local.get $out) (i32.const 10)) (local.get $digits)))
    (local.set $n (local.get $length))
    (loop $write
      (local.set $end (i32.sub (local.get $end) (i32.const 1)))
      (i32.store8 (local.get $end) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $write (i32.ne (local.get $n) (i32.const 0))))
    (i32.store8 (i32.add (i32.add (local.get $out) (i32.const 10)) (local.get $digits)) (i32.const 125))
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
      (i64.extend_i32_u (i32.add (local.get $digits) (i32.const 11))))))
