import { load as loadLibrary } from 'koffi';

let mallocTrim: ((pad: number) => number) | null | undefined;

/**
 * Gives the free memory of every glibc malloc arena back to the system (`malloc_trim(0)` walks all arenas, the
 * exited decoder threads' included). pocketsphinx's small allocations (below the mmap threshold) stay in the arena
 * of the thread that made them after the decoder is freed and the thread has exited; glibc only returns an arena's
 * top, so without this a process that once held six decoders keeps ≈ 125 MB more than it did idle. Returns whether
 * anything was released; false where there is no glibc (musl, macOS), where it is a no-op.
 */
export function trimNativeHeap(): boolean {
  if (mallocTrim === undefined) {
    try {
      mallocTrim = loadLibrary('libc.so.6').func('int malloc_trim(size_t pad)') as (pad: number) => number;
    } catch {
      mallocTrim = null;
    }
  }
  return mallocTrim ? mallocTrim(0) === 1 : false;
}
