#include <capstone/capstone.h>
#include <stdint.h>
#include <stddef.h>
void* decode_instructions_virtual(uintptr_t start_va, uintptr_t end_va, unsigned char* buffer, uintptr_t length,
    void* (*event_callback)(void*, const char*, void*), void* event_stream,
    int (*printf_callback)(void*, const char*, ...), void* printf_stream, const char* options, int newline) {
  csh h; cs_insn *insn;
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK) return NULL;
  size_t count = cs_disasm(h, buffer, length, start_va, 0, &insn);
  for (size_t j = 0; j < count; j++) {
    (*event_callback)(event_stream, "insn", (void*)(uintptr_t)insn[j].address);
    (*printf_callback)(printf_stream, "%s\t%s", insn[j].mnemonic, insn[j].op_str);
    (*event_callback)(event_stream, "/insn", (void*)(uintptr_t)(insn[j].address + insn[j].size));
    if (newline) (*printf_callback)(printf_stream, "\n");
  }
  if (count > 0) cs_free(insn, count);
  cs_close(&h);
  return (void*)(start_va + length);
}
