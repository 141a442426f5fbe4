import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.data/**', 'plugins/dist/**', 'examples/*/dist/**', 'examples/*/node_modules/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off'
    }
  },
  {
    // The lead-capture page's script runs in the browser.
    files: ['services/api/public/**/*.js'],
    languageOptions: { sourceType: 'module', globals: { document: 'readonly', fetch: 'readonly', window: 'readonly' } }
  }
)
