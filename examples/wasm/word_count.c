// A Caravan module in C: counts the words of the input's "text" and keeps a running total in the run's key-value
// store. Build it without libc:
//
//   clang --target=wasm32 -nostdlib -O2 -Wl,--no-entry -o word_count.wasm word_count.c
//
// and upload it (`permissions: {kv: true}`): it answers {"words": N, "total": M}.
//
// The caravan ABI: export `memory`, `caravan_alloc(size) -> pointer` and `caravan_run(pointer, length)`, which
// returns the output's pointer and length packed as (pointer << 32) | length. Imports come from module "caravan".

typedef unsigned int u32;
typedef unsigned long long u64;

__attribute__((import_module("caravan"), import_name("log"))) void caravan_log(const char *text, u32 length);
__attribute__((import_module("caravan"), import_name("kv_get"))) u64 caravan_kv_get(const char *key, u32 length);
__attribute__((import_module("caravan"), import_name("kv_put")))
void caravan_kv_put(const char *key, u32 key_length, const char *value, u32 value_length);

extern unsigned char __heap_base;
static unsigned char *heap = &__heap_base;

// A bump allocator: a call's memory lives as long as the call.
__attribute__((export_name("caravan_alloc"))) void *caravan_alloc(u32 size) {
    unsigned char *pointer = heap;
    u32 needed = (u32)(heap - (unsigned char *)0) + size;
    u32 have = __builtin_wasm_memory_size(0) * 65536;
    if (needed > have) {
        if (__builtin_wasm_memory_grow(0, (needed - have + 65535) / 65536) == (u32)-1) return 0;
    }
    heap += (size + 7) & ~7u;
    return pointer;
}

static u32 write_number(char *out, u32 value) {
    char digits[10];
    u32 count = 0;
    do { digits[count++] = (char)('0' + value % 10); value /= 10; } while (value);
    for (u32 i = 0; i < count; i++) out[i] = digits[count - 1 - i];
    return count;
}

static u32 read_number(const char *text, u32 length) {
    u32 value = 0;
    for (u32 i = 0; i < length && text[i] >= '0' && text[i] <= '9'; i++) value = value * 10 + (u32)(text[i] - '0');
    return value;
}

// The words of the string value of "text" (a plain scan: enough for this example's JSON).
static u32 count_words(const char *json, u32 length) {
    static const char key[] = "\"text\"";
    u32 i = 0, words = 0, in_word = 0;
    for (; i + 6 <= length; i++) {
        u32 j = 0;
        while (j < 6 && json[i + j] == key[j]) j++;
        if (j == 6) break;
    }
    for (i += 6; i < length && json[i] != '"'; i++) {}
    for (i++; i < length && json[i] != '"'; i++) {
        int space = json[i] == ' ' || json[i] == '\n' || json[i] == '\t';
        if (!space && !in_word) words++;
        in_word = !space;
    }
    return words;
}

__attribute__((export_name("caravan_run"))) u64 caravan_run(const char *input, u32 length) {
    caravan_log("counting words", 14);
    u32 words = count_words(input, length);
    u32 total = words;
    u64 previous = caravan_kv_get("total", 5);
    if (previous != (u64)-1) total += read_number((const char *)(u32)(previous >> 32), (u32)previous);
    char number[10];
    caravan_kv_put("total", 5, number, write_number(number, total));

    char *out = caravan_alloc(64);
    u32 n = 0;
    const char *start = "{\"words\":";
    for (u32 i = 0; start[i]; i++) out[n++] = start[i];
    n += write_number(out + n, words);
    const char *middle = ",\"total\":";
    for (u32 i = 0; middle[i]; i++) out[n++] = middle[i];
    n += write_number(out + n, total);
    out[n++] = '}';
    return ((u64)(u32)out << 32) | n;
}
