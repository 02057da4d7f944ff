/* Pre-included into every file with -include. */
#define CONFIG_GREETING "hello from pump"
