// Type-aware lint: a dropped fsync promise is a lost write.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/**', 'test/fixtures/**', 'eslint.config.js', 'vitest.config.ts', 'test/summary-reporter.ts'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // Async API methods stay async so that a synchronous throw reaches the caller as a rejection.
      '@typescript-eslint/require-await': 'off',
    },
  },
);
