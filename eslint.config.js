// Flat config. Not type-aware on purpose: it keeps `eslint .` fast and independent of the build.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'out/**', 'coverage/**'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    // Everything here runs on Node (services, scripts, tests), except the talk page below.
    languageOptions: { globals: globals.node },
    rules: {
      // `_`-prefixed names mark deliberately unused parameters (handler signatures, callbacks).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
    },
  },
  {
    // The browser talk page and its AudioWorklet.
    files: ['services/*/web/**/*.js'],
    languageOptions: { globals: { ...globals.browser, ...globals.audioWorklet } },
  },
);
